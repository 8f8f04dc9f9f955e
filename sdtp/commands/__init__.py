"""The commands: `python -m sdtp <command>`, what the Snakemake rules call.

Each module here is one command: `add_arguments(parser)` and `main(args) -> int`. It reads the job's `--settings`,
builds objects from the library (everything in `sdtp` outside this package), runs them and writes Parquet/JSON.
The library never imports this package (an import-linter contract in pyproject.toml keeps it so).
"""
