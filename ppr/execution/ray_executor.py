"""The ``ray`` executor: workers are Ray actors, on a local instance or on a cluster.

Ray is an optional extra (``pip install -e ".[ray]"``); without it, asking for this executor
fails with one line saying so. ``address`` is passed to ``ray.init``: ``""`` starts a local
instance (shut down again by :meth:`RayExecutor.close`), ``"auto"`` joins the cluster this
machine belongs to, ``"ray://host:10001"`` a remote one through Ray Client. When Ray is already
initialised in this process (a test's shared instance, or a sweep point running inside a Ray
worker), that instance is used and left running.

Invariants (as every executor, :mod:`ppr.execution.base`):

* One actor per worker (``num_cpus=1`` each), at most one item in flight per actor; items are
  pulled lazily. The setup goes into Ray's object store once per call and each actor builds its
  state once per setup key (a CKKS encryptor from the serialized public context).
* An actor that dies (its process killed, its node lost) shows up as ``RayActorError``: its item
  is reported lost (``WORKER_CRASHED``) and a new actor takes its place; one that holds an item
  for more than ``stall_timeout_s`` seconds is killed and replaced, its item lost
  (``WORKERS_STALLED``). At most ``workers`` replacements per call, then every item left is
  lost. An exception raised by ``fn`` comes back as the item's ``error`` (the original
  exception, not Ray's wrapper).
* Closing the iterator early (or Ctrl-C) kills the actors still holding an item: their answers
  can never be read as part of a later call.
* The actors and the points they run must see the same files as the caller: on a cluster, ppr
  installed on every node and output directories on a shared filesystem (see ``docs/ray.md``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ppr.errors import ConfigError
from ppr.execution.base import WORKER_CRASHED, WORKERS_STALLED, Done, Executor, Setup, build_state
from ppr.execution.processes import Feed, worker_env

__all__ = ["RayExecutor", "import_ray"]

MISSING = (
    '`execution.executor = "ray"` needs Ray, an optional extra: pip install -e ".[ray]" '
    '(or pip install "ray>=2.40").'
)


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`~ppr.errors.ConfigError` saying how to get it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(MISSING) from None
    return ray


class _Actor:
    """A Ray worker: the state of the last setup key, and ``fn(state, item)`` per call."""

    def __init__(self, env: dict[str, str]) -> None:
        os.environ.update(env)  # before this process imports numpy or jax for an item
        self._key: str | None = None
        self._state: Any = None

    def ready(self) -> bool:
        return True

    def run(self, setup: Setup | None, fn: Callable[[Any, Any], Any], item: Any) -> Any:
        key = None if setup is None else setup.key
        if key != self._key:
            self._state, self._key = build_state(setup), key
        return fn(self._state, item)


class RayExecutor(Executor):
    """``workers`` Ray actors (see the module invariants)."""

    kind = "ray"

    def __init__(
        self, workers: int, address: str = "", stall_timeout_s: float | None = None
    ) -> None:
        if int(workers) < 1:
            raise ValueError(f"`workers` must be at least 1. Found {workers}.")
        if stall_timeout_s is not None and not stall_timeout_s > 0:
            raise ValueError(f"`stall_timeout_s` must be positive. Found {stall_timeout_s}.")
        self._ray = ray = import_ray()
        self.workers = int(workers)
        self.stall_timeout_s = stall_timeout_s
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            self._init(address)
        local = not address
        # a local instance shares this machine's cores; on a cluster Ray sets the thread counts
        env = worker_env(self.workers) if local else {"TF_CPP_MIN_LOG_LEVEL": "3"}
        self._actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self._env = env
        self._actors: list[Any] = []

    def _init(self, address: str) -> None:
        kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if not address:
            kw["include_dashboard"] = False
        try:
            self._ray.init(address=address or None, **kw)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise ConfigError(
                f"`execution.ray_address`: could not start or join Ray at {address or 'local'!r}:"
                f" {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._env)

    def _fill(self) -> None:
        while len(self._actors) < self.workers:
            self._actors.append(self._new_actor())

    def _replace(self, actor: Any) -> None:
        self._ray.kill(actor, no_restart=True)
        self._actors.remove(actor)

    def warm_up(self, setup: Setup | None = None) -> None:
        """Start the actors and build their state now."""
        self._fill()
        ray = self._ray
        if setup is None:
            ray.get([a.ready.remote() for a in self._actors])
        else:
            ref = ray.put(setup)
            ray.get([a.run.remote(ref, _noop, None) for a in self._actors])

    def as_completed(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], setup: Setup | None = None
    ) -> Iterator[Done]:
        return self._run(fn, Feed(iter(items)), setup)

    def _run(self, fn: Callable, feed: Feed, setup: Setup | None) -> Iterator[Done]:
        ray = self._ray
        self._fill()
        setup_ref = None if setup is None else ray.put(setup)
        flight: dict[Any, tuple[Any, int, Any, float]] = {}  # ref -> (actor, index, item, since)
        replacements = 0
        try:
            while True:
                busy = {v[0] for v in flight.values()}
                for actor in [a for a in self._actors if a not in busy]:
                    if (nxt := feed.next()) is None:
                        break
                    ref = actor.run.remote(setup_ref, fn, nxt[1])
                    flight[ref] = (actor, nxt[0], nxt[1], time.monotonic())
                if not flight and feed.done:
                    return
                if replacements > self.workers:
                    yield from self._drop_rest(flight, feed)
                    return
                for done in self._wait(flight):
                    if done.lost is not None:
                        replacements += 1
                    yield done
                if replacements <= self.workers:
                    self._fill()
        finally:
            for actor, *_ in flight.values():  # the caller stopped early: never read them
                self._replace(actor)

    def _wait(self, flight: dict[Any, tuple[Any, int, Any, float]]) -> Iterator[Done]:
        """Outcomes of the items that finish first (or pass the stall deadline)."""
        ray = self._ray
        timeout = None
        if self.stall_timeout_s is not None:
            oldest = min(v[3] for v in flight.values())
            timeout = max(oldest + self.stall_timeout_s - time.monotonic(), 0.0)
        ready, _ = ray.wait(list(flight), num_returns=1, timeout=timeout)
        if not ready:  # past the deadline: hung, kill and replace
            now = time.monotonic()
            for ref, (actor, index, item, since) in list(flight.items()):
                if now >= since + (self.stall_timeout_s or 0.0):
                    del flight[ref]
                    self._replace(actor)
                    yield Done(index, item, lost=WORKERS_STALLED)
            return
        for ref in ready:
            actor, index, item, _ = flight.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayActorError:
                self._replace(actor)
                yield Done(index, item, lost=WORKER_CRASHED)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                yield Done(index, item, error=cause if cause is not None else exc)
            else:
                yield Done(index, item, value)

    def _drop_rest(self, flight: dict, feed: Feed) -> Iterator[Done]:
        for ref, (actor, index, item, _) in list(flight.items()):
            del flight[ref]
            self._replace(actor)
            yield Done(index, item, lost=WORKER_CRASHED)
        while (nxt := feed.next()) is not None:
            yield Done(*nxt, lost=WORKER_CRASHED)

    def close(self) -> None:
        """Kill the actors; shut Ray down when this executor started it (idempotent)."""
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False


def _noop(_state: Any, _item: Any) -> None:
    """Builds an actor's state (the call's setup) and does nothing else."""
