"""Posterior quality on the zoo: ours against NumPyro's autoguides at equal gradient budget.

    python bench/zoo.py                                  # every model, the default systems
    python bench/zoo.py --models eight_schools_centered funnel --steps 2000
    python bench/zoo.py --systems "nfvi:affine-loc" "nfvi:affine-loc/stl" numpyro:AutoNormal
    python bench/zoo.py --results zoo.jsonl   # resumable: fits already in the file are kept

For each zoo model (``bench/zoo``) every system is fitted with the same optimizer (Adam,
peak rate 1e-2, a cosine decay to 1e-4 over the run: ``vi.default_optimizer``, the
same schedule rebuilt in optax for NumPyro), the same number of steps and the same
Monte-Carlo particles per step: the same budget of gradient evaluations
(steps x particles). Then from 4,096 fresh draws of the fitted q:

- error = max over coordinates of max(|mean - ref_mean| / ref_sd, |log(sd / ref_sd)|),
  in the constrained space, against the reference posterior (``bench/zoo/references``).
  With 4,096 draws the Monte-Carlo part of it is about 0.03-0.06 (the max of many
  coordinates' 1/sqrt(S) errors), so differences below ~0.05 are noise;
- k-hat, the PSIS Pareto shape of log p - log q over the same number of fresh draws
  (``vi.diagnostics.Diagnosis``; < 0.7: usable);
- the wall time of the fit (set-up and compilation included).

Systems are ``nfvi:FORMULA`` (``nfvi:auto`` is the recipe of :mod:`guides.recipe`),
fitted with ``NFVI.fit``'s default ELBO (for ``auto`` the recipe's), or with
``/stl`` or ``/trace`` the one named, and ``numpyro:GUIDE`` for
``AutoNormal``, ``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal``,
``AutoIAFNormal``, ``AutoBNAFNormal`` (up to d = ``BNAF_MAX_DIM``). Output: a
markdown table per model and a summary of the best NumPyro error against ours.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer import autoguide as numpyro_guides

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo import MODELS, load_reference

from guides.recipe import recipe
from vi import NFVI, Model
from vi.diagnostics import Diagnosis
from vi.optim import COSINE_ALPHA, DEFAULT_LEARNING_RATE

NUM_DRAWS = 4096
NUMPYRO = ("AutoNormal", "AutoMultivariateNormal", "AutoLowRankMultivariateNormal",
           "AutoIAFNormal", "AutoBNAFNormal")
DEFAULT_SYSTEMS = ("nfvi:auto", *(f"numpyro:{g}" for g in NUMPYRO))

Draws = dict[str, np.ndarray]


@dataclass
class Result:
    """One system fitted on one model."""

    system: str
    error: float
    khat: float
    seconds: float
    detail: str = ""


def error(draws: Draws, ref: dict[str, Any]) -> float:
    """max over coordinates of max(|mean - ref_mean| / ref_sd, |log(sd / ref_sd)|)."""
    worst = 0.0
    for site in ref["sites"]:
        x = np.asarray(draws[site], np.float64).reshape(len(draws[site]), -1)
        mean, sd = ref["mean"][site].reshape(-1), ref["sd"][site].reshape(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(x.mean(0) - mean) / sd
            s = np.abs(np.log(x.std(0, ddof=1) / sd))
        worst = max(worst, float(np.nanmax(np.where(np.isfinite(z), z, np.inf))),
                    float(np.nanmax(np.where(np.isfinite(s), s, np.inf))))
    return worst


def fit_ours(model: Model, formula: str, elbo: str | None, steps: int, particles: int,
             seed: int) -> tuple[Draws, float, str]:
    """NFVI with ``formula`` (``auto``: the recipe) for ``steps`` x ``particles``, with
    ``elbo`` (``None``: ``NFVI.fit``'s default)."""
    inf = NFVI(formula, model, seed=seed)
    approx = inf.fit(steps, n_mc=particles, elbo=elbo, progress=False)
    draws = approx.sample(NUM_DRAWS, key=seed + 1)
    khat = approx.diagnose(NUM_DRAWS, key=seed + 2).khat
    return {k: np.asarray(v) for k, v in draws.items()}, khat, str(approx.formula)


def numpyro_optimizer(steps: int) -> optax.GradientTransformation:
    """Adam with vi.default_optimizer's schedule: a cosine from 1e-2 to 1e-4 over the run."""
    return optax.adam(optax.cosine_decay_schedule(DEFAULT_LEARNING_RATE, steps,
                                                  alpha=COSINE_ALPHA))


def fit_numpyro(model: Model, name: str, steps: int, particles: int, seed: int
                ) -> tuple[Draws, float, str]:
    """NumPyro's ``SVI.run`` with autoguide ``name`` (its own defaults otherwise)."""
    guide = getattr(numpyro_guides, name)(model.fn)
    svi = SVI(model.fn, guide, numpyro_optimizer(steps), Trace_ELBO(num_particles=particles))
    result = svi.run(jax.random.key(seed), steps, *model.args, progress_bar=False,
                     **model.kwargs)
    params = result.params
    draws = guide.sample_posterior(jax.random.key(seed + 1), params, *model.args,
                                   sample_shape=(NUM_DRAWS,), **model.kwargs)
    elbo = Trace_ELBO()

    @jax.jit
    def log_weights(keys: jax.Array) -> jax.Array:
        return -jax.vmap(lambda k: elbo.loss(k, params, model.fn, guide, *model.args,
                                              **model.kwargs))(keys)

    log_w = np.asarray(log_weights(jax.random.split(jax.random.key(seed + 2), NUM_DRAWS)))
    khat = Diagnosis.from_log_weights(log_w).khat
    return {k: np.asarray(v) for k, v in draws.items()}, khat, ""


def run_system(system: str, model: Model, steps: int, particles: int, seed: int
               ) -> tuple[Draws, float, str]:
    """Fit ``system`` (see the module docstring) on ``model``."""
    kind, _, what = system.partition(":")
    if kind == "nfvi":
        formula, _, flag = what.partition("/")
        if flag not in ("", "stl", "trace"):
            raise SystemExit(f"unknown ELBO {flag!r} in {system!r}: /stl or /trace")
        return fit_ours(model, formula, flag or None, steps, particles, seed)
    if kind == "numpyro" and what in NUMPYRO:
        return fit_numpyro(model, what, steps, particles, seed)
    raise SystemExit(f"unknown system {system!r}: nfvi:FORMULA[/stl|/trace] or "
                     f"numpyro:{NUMPYRO}")


BNAF_MAX_DIM = 70
"""NumPyro's AutoBNAFNormal is fitted up to this dimension: its hidden layers grow as 8d,
and on 2 CPU cores one fit of d = 82 at 2,000 x 4 took over ten minutes."""


def measure(name: str, systems: list[str], steps: int, particles: int, seed: int,
            done: dict[tuple[str, str], Result], log: Callable[[str], None]) -> list[Result]:
    """Every system on model ``name`` (those in ``done`` are taken from there); a failed
    fit is a row with an infinite error."""
    fn, args, kwargs = MODELS[name].bind()
    model, ref = Model(fn, *args, **kwargs), load_reference(name)
    results = []
    for system in systems:
        if (name, system) in done:
            results.append(done[name, system])
            continue
        if system == "numpyro:AutoBNAFNormal" and MODELS[name].dim > BNAF_MAX_DIM:
            continue
        start = time.perf_counter()
        try:
            draws, khat, detail = run_system(system, model, steps, particles, seed)
            err = error(draws, ref)
        except Exception as exc:  # a guide that cannot fit this model: say why, go on
            draws, khat, err, detail = {}, math.inf, math.inf, f"failed: {exc!s:.80}"
        seconds = time.perf_counter() - start
        results.append(Result(system, err, khat, seconds, detail))
        log(results[-1], name)
    return results


def load_results(path: Path | None, steps: int, particles: int, seed: int
                 ) -> dict[tuple[str, str], Result]:
    """Results of earlier runs with the same budget and seed, by (model, system)."""
    if path is None or not path.exists():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if (row.pop("steps"), row.pop("particles"), row.pop("seed")) == (steps, particles, seed):
            name = row.pop("model")
            done[name, row["system"]] = Result(**row)
    return done


def table(name: str, dim: int, results: list[Result]) -> str:
    """A markdown table of one model's results."""
    lines = [f"\n### {name} (d = {dim})\n", "| system | error | k-hat | fit + draws (s) | note |",
             "|---|---:|---:|---:|---|"]
    best = min(r.error for r in results)
    for r in results:
        mark = " **best**" if r.error == best else ""
        lines.append(f"| {r.system} | {r.error:.3f}{mark} | {r.khat:.2f} | {r.seconds:.1f} "
                     f"| {r.detail} |")
    return "\n".join(lines)


def summary(all_results: dict[str, list[Result]], ours: str) -> str:
    """Ours against the best NumPyro autoguide on every model."""
    lines = [f"\n### Summary: {ours} against the best NumPyro autoguide\n",
             "| model | d | ours: error | ours: k-hat | best NumPyro | its error | ratio |",
             "|---|---:|---:|---:|---|---:|---:|"]
    wins = clear = 0
    for name, results in all_results.items():
        mine = next((r for r in results if r.system == ours), None)
        theirs = [r for r in results if r.system.startswith("numpyro:")]
        if mine is None or not theirs:
            continue
        best = min(theirs, key=lambda r: r.error)
        ratio = mine.error / best.error if best.error > 0 else math.inf
        wins += mine.error <= best.error
        clear += ratio <= 0.8
        lines.append(f"| {name} | {MODELS[name].dim} | {mine.error:.3f} | {mine.khat:.2f} "
                     f"| {best.system.split(':')[1]} | {best.error:.3f} | {ratio:.2f} |")
    lines.append(f"\nours <= best NumPyro on {wins} of {len(all_results)} models; "
                 f"<= 0.8x on {clear}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--systems", nargs="+", default=list(DEFAULT_SYSTEMS))
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path,
                        help="a JSON-lines file: each fit is appended to it, and fits it "
                             "already holds (same steps, particles, seed) are not redone")
    args = parser.parse_args()

    print(f"# Zoo: {args.steps:,} steps x {args.particles} particles "
          f"({args.steps * args.particles:,} gradient evaluations) per fit, Adam 1e-2 "
          f"cosine to 1e-4, seed {args.seed}; {NUM_DRAWS:,} draws per evaluation\n",
          flush=True)
    for name in args.models:
        dim = MODELS[name].dim
        print(f"recipe for {name} (d = {dim}): {recipe(dim)}", file=sys.stderr)
    done = load_results(args.results, args.steps, args.particles, args.seed)

    def log(result: Result, name: str) -> None:
        print(f"  {name} {result.system}: error {result.error:.3f} k-hat {result.khat:.2f} "
              f"{result.seconds:.0f} s {result.detail}", file=sys.stderr, flush=True)
        if args.results is not None:
            row = {"model": name, "steps": args.steps, "particles": args.particles,
                   "seed": args.seed, **asdict(result)}
            with args.results.open("a") as f:
                f.write(json.dumps(row) + "\n")

    all_results: dict[str, list[Result]] = {}
    wall = time.perf_counter()
    for name in args.models:
        all_results[name] = measure(name, args.systems, args.steps, args.particles, args.seed,
                                    done, log)
        print(table(name, MODELS[name].dim, all_results[name]), flush=True)
    ours = next((s for s in args.systems if s.startswith("nfvi:")), None)
    if ours is not None:
        print(summary(all_results, ours))
    print(f"\ntotal wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
