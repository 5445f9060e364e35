"""Shared CLI plumbing: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import Progress

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


@contextlib.contextmanager
def ctrl_c_checkpoint() -> Iterator[Callable[[], None]]:
    """Ctrl-C raises ``KeyboardInterrupt`` as usual and is also remembered; the ``check()`` this
    yields raises it again. Python drops an exception raised inside a garbage-collection
    callback (JAX registers one), so commands call ``check()`` at every round: a Ctrl-C that
    landed there still stops the run at the next round, and the "Exception ignored" report
    Python would print for it is held back (stderr stays one line). A SIGINT that is ignored
    (a background job) stays ignored; off the main thread nothing is installed."""
    pressed = threading.Event()

    def check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    def on_sigint(signum: int, frame: Any) -> None:
        pressed.set()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(
        signal.SIGINT
    ) in (signal.SIG_IGN, None):
        yield check
        return
    def unraisable(info: Any) -> None:
        # The Ctrl-C that Python dropped inside a callback is remembered and raised at the next
        # check: no "Exception ignored" traceback for it. Anything else goes to the usual hook.
        if isinstance(info.exc_value, KeyboardInterrupt) and pressed.is_set():
            return
        old_hook(info)

    old = signal.signal(signal.SIGINT, on_sigint)
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield check
    finally:
        sys.unraisablehook = old_hook
        signal.signal(signal.SIGINT, old)


def stop_progress(bar: Progress) -> None:
    """Stop a progress display if it was drawn (commands draw it only once input is valid)."""
    if bar.live.is_started:
        bar.stop()


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
