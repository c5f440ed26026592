"""Scaling out: minibatch SVI on large data, and one fit spread over several devices.

(a) Step time of a subsampled logistic regression (B = 1,024 rows a step, 20
    predictors and an intercept, mean-field ``scale-loc`` guide, Adam 1e-2) for
    N = 10^4 ... 10^7 rows held on the device: ours (``NFVI.fit``: the minibatch
    indices are drawn inside the compiled chunk) against NumPyro's own ``SVI.run``
    with an ``AutoNormal`` guide on the same model and data, in the same run. What a
    user waits for: a whole first ``fit`` call (tracing and compiling included) and a
    second one; beside it the steady cost of one step (ours: the second call over
    its steps; NumPyro: every ``run`` call re-compiles, so its step cost is the
    difference of a ``2n`` and an ``n`` call over ``n``).
(b) The same programs on 1, 2 and 4 forced host devices
    (``XLA_FLAGS=--xla_force_host_platform_device_count``, each count in its own
    process): restarts = 4 of a ``planar*4-scale-loc`` fit of a correlated 6-d
    Gaussian (restarts spread), ``n_mc = 8`` of the same (particles spread), and the
    minibatch regression with N = 10^6 (rows spread). Steps per second of a second
    fit call, and the largest difference of the fitted parameters from the
    one-device run. On a 2-core CPU the forced devices share the two cores: this
    shows the overhead of spreading, not a speed-up.

Run: ``python bench/scale.py`` (about 4 minutes on 2 CPU cores; ``--sizes 1e4 1e5``
and ``--steps`` to shorten; ``--part a`` or ``--part b`` for one table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from vi import NFVI, Model

BATCH = 1024
PREDICTORS = 20


def logistic(X: jax.Array, y: jax.Array) -> None:
    """Bayesian logistic regression, the likelihood over a minibatch of ``BATCH`` rows."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    b0 = numpyro.sample("b0", dist.Normal(0.0, 5.0))
    with numpyro.plate("data", X.shape[0], subsample_size=BATCH) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=b0 + X[idx] @ beta), obs=y[idx])


def data(n: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """``n`` rows of standard-normal predictors and Bernoulli responses, on the device."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, PREDICTORS), dtype=np.float32)
    beta = rng.standard_normal(PREDICTORS).astype(np.float32) * 0.5
    y = (rng.random(n, dtype=np.float32) < 1 / (1 + np.exp(-(X @ beta + 0.3)))).astype(
        np.float32)
    return jnp.asarray(X), jnp.asarray(y)


def numpyro_run(svi: SVI, steps: int, X: jax.Array, y: jax.Array) -> Any:
    """NumPyro's own loop (one ``lax.fori_loop``, no progress bar); its parameters."""
    return svi.run(jax.random.key(0), steps, X, y, progress_bar=False).params


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def part_a(sizes: list[int], steps: int) -> list[list[str]]:
    rows = [["N", "ours first fit (s)", "ours second fit (s)", "ours ms/step",
             "NumPyro SVI.run (s)", "NumPyro ms/step", "ms/step ratio NumPyro/ours"]]
    base = None
    for n in sizes:
        X, y = data(n)
        inf = NFVI("scale-loc", Model(logistic, X, y))
        t_first, _ = timed(lambda inf=inf: inf.fit(steps, progress=False).params)
        t_second, _ = timed(lambda inf=inf: inf.fit(steps, progress=False).params)
        ours = 1e3 * t_second / steps
        svi = SVI(logistic, AutoNormal(logistic), optax.adam(1e-2), Trace_ELBO())
        t_np, _ = timed(partial(numpyro_run, svi, steps, X, y))
        t_np2, _ = timed(partial(numpyro_run, svi, 2 * steps, X, y))
        theirs = 1e3 * max(t_np2 - t_np, 1e-9) / steps
        base = base or ours
        rows.append([f"{n:.0e}", f"{t_first:.2f}", f"{t_second:.2f}",
                     f"{ours:.3f} ({ours / base:.2f}x N=1e4)", f"{t_np:.2f}",
                     f"{theirs:.3f}", f"{theirs / ours:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
        del X, y, inf, svi
    return rows


def gaussian_model() -> Model:
    """A correlated 6-d Gaussian log density (correlation 0.8 between neighbours)."""
    dim = 6
    cov = np.eye(dim) + 0.8 * (np.eye(dim, k=1) + np.eye(dim, k=-1))
    prec = jnp.asarray(np.linalg.inv(cov + 0.7 * np.eye(dim)), jnp.float32)

    def log_density(x: jax.Array) -> jax.Array:
        return -0.5 * x @ prec @ x

    return Model.from_logdensity(log_density, dim)


def child(steps: int) -> None:
    """Run the three spread fits on this process's devices; print JSON."""
    results: dict[str, Any] = {"devices": jax.device_count()}
    X, y = data(1_000_000)
    cases = [("restarts=4", gaussian_model(), "planar*4-scale-loc", {"restarts": 4}),
             ("n_mc=8", gaussian_model(), "planar*4-scale-loc", {"n_mc": 8}),
             ("minibatch N=1e6", Model(logistic, X, y), "scale-loc", {})]
    for name, model, formula, kwargs in cases:
        inf = NFVI(formula, model)
        inf.fit(steps, progress=False, **kwargs)
        layout = inf.layout
        t, approx = timed(lambda inf=inf: inf.fit(steps, progress=False))
        results[name] = {
            "steps_per_s": steps / t,
            "spread": "none" if layout is None else (layout.split or "data rows"),
            "params": {k: np.asarray(v).tolist() for k, v in approx.params.items()}}
    print("RESULT " + json.dumps(results), flush=True)


def part_b(steps: int, counts: tuple[int, ...] = (1, 2, 4)) -> list[list[str]]:
    runs = {}
    for count in counts:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}")
        out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps)],
                             env=env, capture_output=True, text=True, check=True).stdout
        runs[count] = json.loads(out.split("RESULT ", 1)[1])
    rows = [["fit", "devices", "spread", "steps/s", "vs 1 device",
             "max |param - 1-device param|"]]
    for name in ("restarts=4", "n_mc=8", "minibatch N=1e6"):
        one = runs[counts[0]][name]
        for count in counts:
            res = runs[count][name]
            diff = max(float(np.max(np.abs(np.asarray(res["params"][k]) -
                                           np.asarray(one["params"][k]))))
                       for k in one["params"])
            rows.append([name, str(count), res["spread"], f"{res['steps_per_s']:.0f}",
                         f"{res['steps_per_s'] / one['steps_per_s']:.2f}", f"{diff:.1e}"])
            print(" | ".join(rows[-1]), flush=True)
    return rows


def markdown(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.steps)
        return
    print(f"jax {jax.__version__}, numpyro {numpyro.__version__}, backend "
          f"{jax.default_backend()}, {jax.device_count()} device(s): {jax.devices()[0]}")
    if args.part in ("a", "both"):
        print(f"\n(a) minibatch logistic regression, B = {BATCH}, {PREDICTORS} predictors, "
              f"{args.steps} steps a call\n")
        print(markdown(part_a([int(s) for s in args.sizes], args.steps)))
    if args.part in ("b", "both"):
        print(f"\n(b) forced host devices, {args.steps} steps a call\n")
        print(markdown(part_b(args.steps)))


if __name__ == "__main__":
    main()
