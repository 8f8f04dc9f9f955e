from sdtp.cli import main

raise SystemExit(main())
