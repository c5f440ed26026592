"""Regenerate the zoo's reference posteriors (``bench/zoo/references/NAME.npz``).

    python bench/zoo/make_reference.py                        # every model
    python bench/zoo/make_reference.py --only funnel two_modes
    python bench/zoo/make_reference.py --only logistic_regression --samples 500  # smoke run

For a :class:`zoo.Nuts` model: 4 chains of NumPyro NUTS (``chain_method="vectorized"``)
with the model's settings, on the model itself or on its reparametrised twin; the kept
draws of every latent site (constrained space) must reach split R-hat < 1.01 and bulk
ESS > 4,000 on every coordinate (ArviZ, rank-normalised). For a :class:`zoo.Exact`
model the moments are exact and the draws exact by construction. Each file holds, per
site, the mean, the standard deviation and 1,000 draws (thinned evenly over all chains;
float32), and the R-hat maximum, bulk-ESS minimum, chains, kept draws per chain and
divergences. A model that misses the bar is still written, and the script exits with
status 1 after naming it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import arviz as az
import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

# Run as a script, this file's folder is on sys.path, not bench/ where the zoo package is.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo import MODELS, REFERENCES, SEP, Exact, ZooModel, reference_path

NUM_CHAINS = 4
NUM_DRAWS_KEPT = 1000
RHAT_MAX = 1.01
ESS_MIN = 4000


def nuts_reference(model: ZooModel, seed: int, warmup: int | None, samples: int | None
                   ) -> dict[str, np.ndarray | float]:
    """Run NUTS for ``model`` and summarise the draws of its latent sites."""
    spec = model.reference
    fn, args, kwargs = model.bind()
    kernel = NUTS(spec.model or fn, target_accept_prob=spec.target_accept,
                  dense_mass=spec.dense_mass, max_tree_depth=spec.max_tree_depth)
    num_samples = samples or spec.num_samples
    mcmc = MCMC(kernel, num_warmup=warmup or spec.num_warmup, num_samples=num_samples,
                num_chains=NUM_CHAINS, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(seed), *args, extra_fields=("diverging",), **kwargs)
    by_chain = mcmc.get_samples(group_by_chain=True)
    draws = {name: np.asarray(by_chain[name], np.float64) for name in model.latent_shapes()}
    idata = az.from_dict(posterior=draws)
    rhat = az.rhat(idata)
    ess = az.ess(idata, method="bulk")
    pooled = {k: v.reshape(-1, *v.shape[2:]) for k, v in draws.items()}
    keep = np.linspace(0, NUM_CHAINS * num_samples - 1, NUM_DRAWS_KEPT).round().astype(int)
    return {
        "mean": {k: v.mean(axis=0) for k, v in pooled.items()},
        "sd": {k: v.std(axis=0, ddof=1) for k, v in pooled.items()},
        "draws": {k: v[keep] for k, v in pooled.items()},
        "rhat_max": max(float(rhat[k].max()) for k in draws),
        "ess_bulk_min": min(float(ess[k].min()) for k in draws),
        "num_chains": NUM_CHAINS,
        "num_samples": num_samples,
        "divergences": int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum()),
    }


def exact_reference(model: ZooModel, seed: int) -> dict[str, np.ndarray | float]:
    """Exact moments and exact draws for a model whose posterior is known."""
    spec = model.reference
    assert isinstance(spec, Exact)
    mean, sd = spec.moments()
    return {"mean": mean, "sd": sd,
            "draws": spec.sample(np.random.default_rng(seed), NUM_DRAWS_KEPT),
            "rhat_max": math.nan, "ess_bulk_min": math.nan, "num_chains": math.nan,
            "num_samples": math.nan, "divergences": math.nan}


def save(model: ZooModel, ref: dict, source: str) -> Path:
    """Write ``ref`` to the model's reference file (compressed npz, no pickle)."""
    sites = list(model.latent_shapes())
    arrays: dict[str, np.ndarray] = {"sites": np.array(sites), "source": np.array(source)}
    for site in sites:
        arrays[f"mean{SEP}{site}"] = np.asarray(ref["mean"][site], np.float64)
        arrays[f"sd{SEP}{site}"] = np.asarray(ref["sd"][site], np.float64)
        arrays[f"draws{SEP}{site}"] = np.asarray(ref["draws"][site], np.float32)
    for key in ("rhat_max", "ess_bulk_min", "num_chains", "num_samples", "divergences"):
        arrays[key] = np.array(ref[key])
    REFERENCES.mkdir(exist_ok=True)
    path = reference_path(model.name)
    np.savez_compressed(path, **arrays)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), help="these models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, help="warm-up per chain, for every model")
    parser.add_argument("--samples", type=int, help="kept draws per chain, for every model")
    args = parser.parse_args()

    failed = []
    for name in args.only or MODELS:
        model = MODELS[name]
        start = time.perf_counter()
        if isinstance(model.reference, Exact):
            ref, source = exact_reference(model, args.seed), "exact"
        else:
            ref, source = nuts_reference(model, args.seed, args.warmup, args.samples), "nuts"
        path = save(model, ref, source)
        line = (f"{name}: d {model.dim}, {source}, {time.perf_counter() - start:.0f} s, "
                f"{path.stat().st_size / 1024:.0f} KB")
        if source == "nuts":
            ok = ref["rhat_max"] < RHAT_MAX and ref["ess_bulk_min"] > ESS_MIN
            line += (f", max R-hat {ref['rhat_max']:.4f}, min bulk ESS "
                     f"{ref['ess_bulk_min']:,.0f}, divergences {ref['divergences']}"
                     f"{'' if ok else '  FAILS the bar'}")
            if not ok:
                failed.append(name)
        print(line, flush=True)
    if failed:
        print(f"R-hat >= {RHAT_MAX} or bulk ESS <= {ESS_MIN}: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
