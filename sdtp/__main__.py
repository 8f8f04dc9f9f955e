from sdtp.commands.cli import main

raise SystemExit(main())
