"""XLA compilation off the main thread.

XLA compiles without holding Python's GIL, so a program can compile on a worker
thread while the main thread traces (lowers) the next one, and programs that are all
needed before any runs compile side by side on two cores. Compiling is
deterministic: where a program compiles changes nothing in what it computes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax

from flows.flow import RUN_ONCE

__all__ = ["ONCE_COMPILE", "call_async", "compile_all", "compile_async"]

ONCE_COMPILE = {**RUN_ONCE, "xla_cpu_use_fusion_emitters": False}
"""XLA options, on CPU, of programs that run once or seldom: no LLVM optimisation
(:data:`flows.flow.RUN_ONCE`) and XLA's older fusion emitters. On 2 CPU cores the
call keys (:mod:`vi.keys`) compile their threefry code in 0.10 s instead of 0.14 s,
integer arithmetic, so the same bits either way. ``vi.sample``'s programs that run
once or once a window (the start, the moves, the scores, the push-forward, the end of
warm-up) compile in half the time (1.3-1.7 -> 0.6-0.7 CPU seconds each on the 100-d
funnel): a first call on that funnel then compiles for 9.0 s where it took 11.7
(means over seeds 6, 7, 2, 3, 0, 1, 4, 5, one process each); the chains round
differently, and the min ESS per 1000 gradients over those seeds was 38.2 against 36.7
(the build before had a failed seed, 5: 7.1 with 5 divergences; this one 29.3).
docs/sample-record.md has the zoo's figures."""

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nfvi-compile")


def compile_async(lowered: jax.stages.Lowered, after: Future | None = None,
                  options: dict[str, Any] | None = None) -> Future:
    """Start compiling ``lowered`` (``jax.jit(f).lower(...)``) on the compile pool, or,
    with ``after`` (a future of this pool), once that one is done; the future's result
    is the compiled program. The pool runs tasks in the order given, so ``after`` has
    started by the time this one waits for it, and waiting never blocks the pool.
    ``options`` are XLA compiler options (such as :data:`flows.flow.RUN_ONCE`)."""
    def compile_it() -> Any:
        if after is not None:
            after.result()
        return lowered.compile(compiler_options=options)
    return _POOL.submit(compile_it)


def call_async(fn: Callable[[], Any]) -> Future:
    """Run ``fn()`` on the compile pool: for compiling and running a program lowered on
    the calling thread, while that thread goes on tracing. Lower there, not in ``fn``:
    JAX's thread-local settings (``jax.enable_x64``, ``jax.default_device``) do not
    reach the pool's threads."""
    return _POOL.submit(fn)


def compile_all(lowered: dict[str, Callable[[], jax.stages.Lowered]],
                options: dict[str, dict[str, Any] | None] | None = None,
                started: dict[str, Future] | None = None) -> dict[str, Any]:
    """Lower each program in turn on this thread, compiling each on the pool as soon as
    it is lowered, so tracing overlaps compiling; returns the compiled programs by name
    once every one is ready (a compile error is raised here), with those of
    ``started`` (futures of :func:`compile_async`, compiling already). ``options``
    gives some programs, by name, their XLA compiler options."""
    options = options or {}
    futures = dict(started or {})
    futures.update({name: compile_async(lower(), options=options.get(name))
                    for name, lower in lowered.items()})
    return {name: future.result() for name, future in futures.items()}
