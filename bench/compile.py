"""Compile time and steady-state time of a jitted batched ``Flow.forward``.

    python bench/compile.py

For ``planar*k`` (d = 2) and ``scale-hh*d-loc`` it times, on 1000 points,
- first call: trace + compile + run of ``jit(forward)`` (x and log-det),
- steady call: the median of repeated calls (``block_until_ready``),
for the flow (a repeated step is one ``lax.scan``) and, in the same run, for the
same steps composed by an unrolled Python loop (what one gets without the scan).
The ratio column is compile(unrolled) / compile(scan). Unrolled ``hh*1000`` is
skipped: its compile alone would take minutes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from flows import Flow, Params, lookup

N_POINTS = 1000
STEADY_SECONDS = 0.5


def scanned(flow: Flow) -> Callable:
    """A fresh jitted forward of ``flow`` (fresh so that nothing is cached)."""
    return jax.jit(lambda params, z: flow.forward(params, z))


def unrolled(flow: Flow) -> Callable:
    """The same steps as ``flow`` (a formula without groups) applied by a Python loop:
    one traced copy per step."""
    steps = [(key, lookup(key.split("_", 1)[1])(flow.dim)) for key in flow.init(jax.random.key(0))]

    def forward(params: Params, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        def one(v: jax.Array) -> tuple[jax.Array, jax.Array]:
            log_det = jnp.zeros((), v.dtype)
            for key, bijection in steps:
                stacked = params[key]
                for i in range(jax.tree.leaves(stacked)[0].shape[0]):
                    step = jax.tree.map(lambda a, i=i: a[i], stacked)
                    v, step_log_det = bijection.forward(step, v)
                    log_det = log_det + step_log_det
            return v, log_det

        return jax.vmap(one)(z)

    return jax.jit(forward)


def timings(fn: Callable, params: Params, z: jax.Array) -> tuple[float, float, tuple]:
    """(first-call seconds, median steady-call seconds, output)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(params, z))
    first = time.perf_counter() - start
    times: list[float] = []
    while len(times) < 5 or (sum(times) < STEADY_SECONDS and len(times) < 200):
        start = time.perf_counter()
        jax.block_until_ready(fn(params, z))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), out


def row(formula: str, dim: int, compare: bool) -> str:
    flow = Flow(formula, dim)
    params = flow.init(jax.random.key(0), jitter=0.1)
    z = jax.random.normal(jax.random.key(1), (N_POINTS, dim))
    first, steady, (x, log_det) = timings(scanned(flow), params, z)
    text = f"{formula:<18} {dim:>5} {first:>10.2f} {steady * 1e3:>10.2f}"
    if not compare:
        return text + f" {'-':>10} {'-':>10} {'-':>7}"
    u_first, u_steady, (u_x, u_log_det) = timings(unrolled(flow), params, z)
    # Same maths both ways, or the comparison means nothing.
    np.testing.assert_allclose(u_x, x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(u_log_det, log_det, rtol=1e-4, atol=1e-4)
    return text + f" {u_first:>10.2f} {u_steady * 1e3:>10.2f} {u_first / first:>7.1f}"


def main() -> None:
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {N_POINTS} points, float32")
    print(f"{'':<24} {'scan (ours)':^21} {'unrolled loop':^21}")
    print(f"{'formula':<18} {'d':>5} {'first (s)':>10} {'steady(ms)':>10} "
          f"{'first (s)':>10} {'steady(ms)':>10} {'ratio':>7}")
    for k in (2, 8, 32, 128):
        print(row(f"planar*{k}", 2, compare=True), flush=True)
    for dim in (10, 100, 1000):
        print(row(f"scale-hh*{dim}-loc", dim, compare=dim <= 100), flush=True)


if __name__ == "__main__":
    main()
