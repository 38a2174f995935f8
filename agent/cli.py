"""The collapse-audit command line: one function per command.

Exit codes (every command): 0 success, 1 findings flagged (verify-citations, recheck --fail-on-change),
2 bad input, 3 a required source was unreachable.
"""

from __future__ import annotations

import typer
from rich.console import Console

EXIT_OK, EXIT_FLAGGED, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(stderr=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one clear line and return the Exit to raise: bad input never ends in a traceback."""
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# --- run -------------------------------------------------------------------------------------


# --- verify-citations -------------------------------------------------------------------------


# --- claims -----------------------------------------------------------------------------------


# --- simulate ---------------------------------------------------------------------------------


# --- snapshot ---------------------------------------------------------------------------------


if __name__ == "__main__":
    app()
