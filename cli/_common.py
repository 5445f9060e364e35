"""Shared CLI plumbing: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ppr.errors import PprError

F = TypeVar("F", bound=Callable[..., Any])

#: The optional CONFIG argument of the pipeline commands.
ConfigArg = Annotated[
    Path | None, typer.Argument(help="TOML config; omit for the embedded default.")
]
#: ``--set section.key=value`` overrides (repeatable).
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a key: section.key=value (repeatable)."),
]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on one line to stderr and return the exit to raise (code 2)."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    return typer.Exit(code=2)


def guarded(fn: F) -> F:
    """Decorator for commands: a :class:`PprError` (or a missing file) exits 2 with one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PprError as exc:
            raise fail(str(exc)) from None
        except FileNotFoundError as exc:
            raise fail(f"{exc.filename}: file not found") from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout and nothing else."""
    sys.stdout.write(json.dumps(obj, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
