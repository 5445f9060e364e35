"""The executor interface: run ``fn(state, item)`` over items, in-process or on workers.

One small contract for every fan-out in ppr (device encryption, sweep points), with three
implementations: :class:`LocalExecutor` (here: in-process, sequential), ``processes``
(:mod:`ppr.execution.processes`) and ``ray`` (:mod:`ppr.execution.ray_executor`).

Invariants (every implementation):

* ``fn`` and the items must be picklable (a module-level function; its module importable by the
  workers). ``state`` is what the :class:`Setup` builds, once per worker and per setup ``key``
  (e.g. a CKKS encryptor from the serialized public context: TenSEAL objects do not pickle, their
  bytes do), and ``None`` without a setup.
* :meth:`Executor.as_completed` pulls ``items`` lazily, at most one item in flight per worker, so
  memory stays bounded however many items there are, and yields exactly one :class:`Done` per
  item pulled, in completion order: its value, the exception ``fn`` raised (``error``), or why
  the worker never answered (``lost``: it crashed or stalled; the executor replaces it and goes
  on). Closing the iterator early kills the workers that still hold an item, so their answers can
  never be read as part of a later call.
* :meth:`Executor.map` is the ordered, all-or-nothing form: results in item order, the first
  error re-raised.
* The same ``fn``, ``item`` and ``state`` give the same result on every executor: the workers run
  the very same code, and nothing of the executor enters the computation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Self

__all__ = [
    "WORKERS_STALLED",
    "WORKER_CRASHED",
    "Done",
    "ExecutionError",
    "Executor",
    "LocalExecutor",
    "Setup",
    "build_state",
]

WORKER_CRASHED = "worker crashed"
WORKERS_STALLED = "worker stalled"


class ExecutionError(RuntimeError):
    """An item whose worker never answered (crashed or stalled), raised by :meth:`Executor.map`."""


class Setup(NamedTuple):
    """Per-worker state: ``factory(*args)``, built once per worker; ``key`` names it (a worker
    holding the state of another key rebuilds). ``factory`` and ``args`` must be picklable."""

    key: str
    factory: Callable[..., Any]
    args: tuple = ()


def build_state(setup: Setup | None) -> Any:
    """The state ``setup`` describes (``None`` without one)."""
    return None if setup is None else setup.factory(*setup.args)


class Done(NamedTuple):
    """One item's outcome: ``index`` (its position among the items pulled), the item itself, and
    exactly one of ``value`` (when ``error`` and ``lost`` are ``None``), ``error`` (what ``fn``
    raised) or ``lost`` (the reason the worker never answered)."""

    index: int
    item: Any
    value: Any = None
    error: BaseException | None = None
    lost: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.lost is None

    def result(self) -> Any:
        """The value; raises ``error``, or :class:`ExecutionError` for a lost item."""
        if self.error is not None:
            raise self.error
        if self.lost is not None:
            raise ExecutionError(f"item {self.index}: {self.lost}")
        return self.value


class Executor(ABC):
    """Runs ``fn(state, item)`` over items; a context manager that owns its workers."""

    #: ``"local"``, ``"processes"`` or ``"ray"``
    kind: str = ""
    #: how many items run at once
    workers: int = 1

    @abstractmethod
    def as_completed(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], setup: Setup | None = None
    ) -> Iterator[Done]:
        """One :class:`Done` per item, in completion order (see the module invariants)."""

    def warm_up(self, setup: Setup | None = None) -> None:  # noqa: B027 - optional hook
        """Start the workers and build their state now (otherwise on first use)."""

    def map(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], setup: Setup | None = None
    ) -> list[Any]:
        """``[fn(state, item) for item in items]`` in item order; the first failure (in
        completion order) is raised and the items still running are abandoned."""
        out: dict[int, Any] = {}
        stream = self.as_completed(fn, items, setup)
        try:
            for done in stream:
                out[done.index] = done.result()
        finally:
            stream.close()
        return [out[i] for i in range(len(out))]

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Stop the workers (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """In the calling process, one item after the other (``workers`` is 1). The state of the
    last setup key is kept across calls, as a worker keeps it."""

    kind = "local"

    def __init__(self) -> None:
        self.workers = 1
        self._key: str | None = None
        self._state: Any = None

    def _state_for(self, setup: Setup | None) -> Any:
        if setup is None:
            return None
        if self._key != setup.key:
            self._state, self._key = build_state(setup), setup.key
        return self._state

    def warm_up(self, setup: Setup | None = None) -> None:
        self._state_for(setup)

    def as_completed(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], setup: Setup | None = None
    ) -> Iterator[Done]:
        state = self._state_for(setup)
        for index, item in enumerate(items):
            try:
                value = fn(state, item)
            except Exception as exc:  # reported, as a worker reports it
                yield Done(index, item, error=exc)
            else:
                yield Done(index, item, value)

    def close(self) -> None:
        self._key, self._state = None, None
