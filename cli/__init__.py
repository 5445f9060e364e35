"""The `ppr` command line: one thin Typer command per file, each a call into the library."""
