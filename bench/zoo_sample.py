"""Flow-adapted NUTS on the zoo: ``vi.sample(adapt="flow")`` against plain NUTS.

    python bench/zoo_sample.py                              # every zoo model
    python bench/zoo_sample.py --models funnel eight_schools_centered --chains 2
    python bench/zoo_sample.py --results sample.jsonl       # resumable
    python bench/zoo_sample.py --funnel-shaped --seeds 0 1 2 3   # means over seeds

For each zoo model (``bench/zoo``), in the same run: ``vi.sample(model,
adapt="flow")`` with its default flow and ``vi.sample(model, adapt="diag")``
(NumPyro's NUTS adaptation: step size and diagonal mass matrix), each with
``--chains`` chains x (``--warmup`` + ``--samples``) transitions. Reported per
system: the minimum bulk ESS over every latent coordinate (constrained space), the
gradient evaluations of the whole call (warm-up, training and sampling, from
``attrs``), min ESS per 1000 gradients, divergences while sampling, the wall time
of the call (compilation included), and the error against the reference posterior
(max over coordinates of max(|mean - ref| / ref_sd, |log(sd / ref_sd)|), as in
``zoo.py``; with a few hundred effective draws its Monte-Carlo part is ~0.1-0.2).

One seed's min ESS is itself noisy (per 1000 gradients, between seeds 0-3 of one
model: up to a factor of 2.8 for flow-adapted runs, 17 on the 10-d funnel, and 4.3
for plain NUTS), so with several ``--seeds`` a last table gives each model's mean over
them, its standard error, and the ratio of the two systems' means.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import arviz as az
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo import MODELS, load_reference

from vi import Model, sample

HERE = Path(__file__).resolve().parent
# zoo.py (the script; ``zoo`` is the package of models) holds the error measure
_spec = importlib.util.spec_from_file_location("zoo_bench", HERE / "zoo.py")
_zoo_bench = sys.modules["zoo_bench"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_zoo_bench)
error = _zoo_bench.error

FUNNEL_SHAPED = ("eight_schools_centered", "funnel", "horseshoe_logistic",
                 "varying_intercept", "stochastic_volatility")
"""Models whose posterior has a scale parameter setting the width of others."""


def run(name: str, adapt: str, args: argparse.Namespace, seed: int) -> dict:
    """One ``vi.sample`` call on zoo model ``name``: its row of figures."""
    fn, data, kwargs = MODELS[name].bind()
    ref = load_reference(name)
    start = time.perf_counter()
    idata = sample(Model(fn, *data, **kwargs), num_warmup=args.warmup,
                   num_samples=args.samples, num_chains=args.chains, adapt=adapt,
                   seed=seed)
    seconds = time.perf_counter() - start
    posterior = idata.posterior[ref["sites"]]
    ess = float(az.ess(posterior, method="bulk").to_array().min())
    draws = {s: np.asarray(posterior[s]).reshape(-1, *posterior[s].shape[2:])
             for s in ref["sites"]}
    n_grad = int(idata.attrs["n_grad"])
    return {"model": name, "adapt": adapt, "ess": ess, "n_grad": n_grad,
            "per_1000": 1000 * ess / n_grad, "divergences": int(idata.attrs["divergences"]),
            "seconds": seconds, "training": float(idata.attrs["training_time"]),
            "refit_steps": int(idata.attrs["n_refit_steps"]), "error": error(draws, ref),
            "chains": args.chains, "warmup": args.warmup, "samples": args.samples,
            "seed": seed}


def measure(name: str, adapt: str, args: argparse.Namespace, seed: int) -> dict:
    """:func:`run`'s row, appended to ``--results``; a failure's row says so."""
    try:
        row = run(name, adapt, args, seed)
    except Exception as exc:  # say why, go on with the next model
        print(f"{name} {adapt} failed: {exc!s:.200}", flush=True)
        return {"model": name, "adapt": adapt, "per_1000": math.nan, "divergences": -1,
                "error": math.inf, "seconds": math.nan}
    if args.results is not None:
        with args.results.open("a") as f:
            f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--funnel-shaped", action="store_true",
                        help="only the funnel-shaped models (overrides --models)")
    parser.add_argument("--results", type=Path, help="a JSON-lines file; rows in it are kept")
    args = parser.parse_args()
    if args.funnel_shaped:
        args.models = list(FUNNEL_SHAPED)
    done = {}
    if args.results is not None and args.results.exists():
        for line in args.results.read_text().splitlines():
            row = json.loads(line)
            if all(row[k] == getattr(args, k) for k in ("chains", "warmup", "samples")):
                done[row["model"], row["adapt"], row["seed"]] = row
    rates: dict[tuple[str, str], list[float]] = {}
    for seed in args.seeds:
        lines = [TABLE_HEADER]
        for name in args.models:
            rows = {adapt: done.get((name, adapt, seed)) or measure(name, adapt, args, seed)
                    for adapt in ("flow", "diag")}
            for adapt, row in rows.items():
                rates.setdefault((name, adapt), []).append(row["per_1000"])
            lines.append(table_row(name, rows["flow"], rows["diag"]))
        print(f"\n{args.chains} chains x ({args.warmup} warm-up + {args.samples} draws), "
              f"seed {seed}\n")
        print("\n".join(lines), flush=True)
    if len(args.seeds) > 1:
        print(f"\nMin ESS per 1000 gradients, mean (standard error) over seeds "
              f"{', '.join(map(str, args.seeds))}\n")
        print("| model | flow | diag | ratio of means | lowest seed's ratio |\n"
              "|---|---:|---:|---:|---:|")
        for name in args.models:
            flow, diag = (np.array(rates[name, adapt]) for adapt in ("flow", "diag"))
            print(f"| {name}{shaped(name)} | {flow.mean():.2f} ({standard_error(flow):.2f}) "
                  f"| {diag.mean():.2f} ({standard_error(diag):.2f}) "
                  f"| {ratio(flow.mean(), diag.mean()):.2f} "
                  f"| {min(map(ratio, flow, diag)):.2f} |")


TABLE_HEADER = ("| model | d | flow: min ESS / 1000 grads | diag: min ESS / 1000 grads "
                "| ratio | flow: divergences | diag: divergences | flow: error | diag: error "
                "| flow: s | diag: s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def table_row(name: str, flow: dict, diag: dict) -> str:
    """One model's line of a seed's table."""
    return (f"| {name}{shaped(name)} | {MODELS[name].dim} | {flow['per_1000']:.2f} "
            f"| {diag['per_1000']:.2f} | {ratio(flow['per_1000'], diag['per_1000']):.2f} "
            f"| {flow['divergences']} | {diag['divergences']} | {flow['error']:.2f} "
            f"| {diag['error']:.2f} | {flow['seconds']:.0f} | {diag['seconds']:.0f} |")


def shaped(name: str) -> str:
    """The table's mark of a funnel-shaped model."""
    return " (funnel-shaped)" if name in FUNNEL_SHAPED else ""


def ratio(a: float, b: float) -> float:
    """a / b, infinite where plain NUTS got no effective draw."""
    return a / b if b else math.inf


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of ``values`` (NaN for one value)."""
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


if __name__ == "__main__":
    main()
