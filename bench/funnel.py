"""Benchmark: MCMC on the 100-d funnel, plain NUTS vs NumPyro NeuTra vs nfvi NeuTra.

The target (REFERENCE.md): log_sigma ~ N(0, 1), x_i | log_sigma ~ N(0, exp(log_sigma / 2)),
i = 1..100. Every system runs 2 chains x 1000 warm-up + 1000 draws, in this one process:

- plain NumPyro NUTS on the model;
- NumPyro ``AutoIAFNormal`` fitted by SVI (10,000 steps x 8 particles), then
  ``NeuTraReparam`` + NUTS;
- ours: ``NFVI(formula).fit(...)`` with Adam whose rate ``--lr`` is cosine-decayed over
  the steps, then ``vi.neutra.neutra`` (NUTS in the flow's latent space, optionally with
  global independence proposals).

Per row: gradient evaluations for training (steps x particles), warm-up and sampling
(NUTS leapfrog steps, plus one per global proposal), min bulk ESS over all 101
coordinates, min ESS per 1000 gradient evaluations (training included), min ESS per
second of wall time (training, compilation and sampling included), divergences in the
kept draws. The published nutpie figures are a reference row (not run here).

    python bench/funnel.py                       # the full table (~2 min on 2 busy cores)
    python bench/funnel.py --dim 10 --warmup 200 --samples 200 --steps 500   # a smoke run
    python bench/funnel.py --sweep               # only our row, for each of SWEEP

Why ``iaf``: in the model's flattened latent order (log_sigma first, then x) the exact
transport is log_sigma = z_0, x_i = exp(z_0 / 2) z_i, which an ``iaf`` in its natural
order can represent (x_i's scale is a function of z_{<i}, z_0 included). A coupling step
cannot: whichever half holds z_0, the other coordinates of that half are never scaled by
it, and ``reverse`` moves z_0 into the transformed half. The fit is still imperfect:
reverse KL shrinks log_sigma's spread (sd ~0.6-0.75 instead of 1), because the
conditioner's tanh units match softplus^{-1}(exp(v / 2)) only near the bulk; longer or
larger fits lower the loss without reducing NUTS's ~15 leapfrog steps (see ``--sweep``),
and min ESS varies by a factor ~2-3 between configurations of equal loss, so one run per
configuration ranks them only roughly. Our wall time is mostly the fit's first call (about
15 s of it is NFVI's eager parameter set-up, op-by-op XLA compiles, not the loop) and
compiling NUTS (~10 s); warm-up plus sampling take ~1.5 s.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoIAFNormal
from numpyro.infer.reparam import NeuTraReparam

from vi import NFVI, Model
from vi.neutra import neutra


def funnel(dim: int = 100) -> None:
    """log_sigma ~ N(0, 1); x | log_sigma ~ N(0, exp(log_sigma / 2) I_dim)."""
    log_sigma = numpyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(log_sigma / 2)).expand([dim]).to_event(1))


@dataclass
class Row:
    """One system's figures."""

    system: str
    training: int
    warmup: int
    sampling: int
    min_ess: float
    divergences: int
    wall: float

    @property
    def total(self) -> int:
        return self.training + self.warmup + self.sampling

    def cells(self) -> list[str]:
        per_grad = 1000 * self.min_ess / self.total
        return [
            self.system,
            f"{self.training:,}",
            f"{self.warmup:,}",
            f"{self.sampling:,}",
            f"{self.total:,}",
            f"{self.min_ess:,.0f}",
            f"{per_grad:.2f}",
            f"{self.min_ess / self.wall:.1f}",
            str(self.divergences),
            f"{self.wall:.1f}",
        ]


HEADER = [
    "system",
    "training grads",
    "warm-up grads",
    "sampling grads",
    "total grads",
    "min ESS (bulk)",
    "min ESS / 1000 grads",
    "min ESS / s",
    "divergences",
    "wall (s)",
]


def min_bulk_ess(posterior: dict[str, np.ndarray]) -> float:
    """The smallest bulk ESS over every coordinate of every site (arrays (chain, draw, ...))."""
    ess = az.ess(az.from_dict(posterior=posterior), method="bulk")
    return min(float(ess[name].min()) for name in ess.data_vars)


def run_mcmc(model, args: argparse.Namespace, seed: int) -> tuple[MCMC, int, int]:
    """Warm-up then sampling with NumPyro's MCMC; returns it and the two phases' steps."""
    mcmc = MCMC(
        NUTS(model),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.warmup(jax.random.key(seed), collect_warmup=True, extra_fields=("num_steps",))
    warm = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum(dtype=np.int64))
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps", "diverging"))
    samp = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum(dtype=np.int64))
    return mcmc, warm, samp


def plain_nuts(args: argparse.Namespace) -> Row:
    start = time.perf_counter()
    model = lambda: funnel(args.dim)  # noqa: E731
    mcmc, warm, samp = run_mcmc(model, args, seed=1)
    wall = time.perf_counter() - start
    posterior = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return Row("NumPyro NUTS", 0, warm, samp, min_bulk_ess(posterior), divergences, wall)


def numpyro_neutra(args: argparse.Namespace) -> Row:
    start = time.perf_counter()
    model = lambda: funnel(args.dim)  # noqa: E731
    guide = AutoIAFNormal(model)
    svi = SVI(model, guide, optax.adam(args.iaf_lr), Trace_ELBO(num_particles=args.iaf_particles))
    params = svi.run(jax.random.key(2), args.iaf_steps, progress_bar=False).params
    reparam = NeuTraReparam(guide, params)
    mcmc, warm, samp = run_mcmc(reparam.reparam(model), args, seed=3)
    latent = mcmc.get_samples(group_by_chain=True)["auto_shared_latent"]
    posterior = {k: np.asarray(v) for k, v in reparam.transform_sample(latent).items()}
    wall = time.perf_counter() - start
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    training = args.iaf_steps * args.iaf_particles
    return Row(
        "NumPyro AutoIAFNormal + NeuTraReparam + NUTS",
        training,
        warm,
        samp,
        min_bulk_ess(posterior),
        divergences,
        wall,
    )


def ours(args: argparse.Namespace) -> Row:
    start = time.perf_counter()
    schedule = optax.cosine_decay_schedule(args.lr, args.steps, alpha=0.01)
    approx = NFVI(args.formula, Model(funnel, args.dim), seed=4).fit(
        args.steps,
        optimizer=optax.adam(schedule),
        n_mc=args.particles,
        progress=False,
        chunk=min(args.steps, 1000),
    )
    fitted = time.perf_counter()
    idata = neutra(
        approx,
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        global_every=args.global_every or None,
        seed=5,
        target_accept_prob=args.target_accept,
    )
    wall = time.perf_counter() - start
    posterior = {k: idata.posterior[k].values for k in idata.posterior.data_vars}
    a = idata.attrs
    print(
        f"  ours {args.formula} {args.steps} x {args.particles} lr {args.lr:g}: "
        f"fit {fitted - start:.1f} s, NUTS compile {a['compile_time']:.1f} s, warm-up "
        f"{a['warmup_time']:.2f} s, sampling {a['sampling_time']:.2f} s, mean leapfrog "
        f"steps {float(idata.sample_stats['n_steps'].mean()):.1f}",
        flush=True,
    )
    moves = ""
    if args.global_every:
        rate = idata.attrs["global_acceptance_rate"]
        moves = f", global proposal every {args.global_every} (accepted {rate:.0%})"
    accept = "" if args.target_accept == 0.8 else f", target accept {args.target_accept}"
    return Row(
        f"nfvi `{args.formula}` ({args.steps} x {args.particles}, lr {args.lr:g}) "
        f"+ vi.neutra{moves}{accept}",
        a["n_grad_training"],
        a["n_grad_warmup"],
        a["n_grad_sampling"],
        min_bulk_ess(posterior),
        int(idata.sample_stats["diverging"].sum()),
        wall,
    )


NUTPIE = [
    "nutpie with flow adaptation (published, not run here)",
    "-",
    "-",
    "-",
    "42,527",
    "1,836",
    f"{1000 * 1836 / 42527:.2f}",
    f"{1836 / (18 * 60):.1f}",
    "0",
    "~1080",
]


SWEEP = [
    {"formula": "iaf(hidden=128)-loc", "steps": 1000, "particles": 4, "lr": 1e-2},
    {"formula": "iaf(hidden=128)", "steps": 1000, "particles": 4, "lr": 1e-2},
    {"formula": "iaf(hidden=128)", "steps": 1000, "particles": 4, "lr": 3e-3},
    {"formula": "iaf(hidden=128)", "steps": 2000, "particles": 4, "lr": 5e-3},
    {"formula": "iaf(hidden=128)", "steps": 2000, "particles": 8, "lr": 5e-3},
    {"formula": "iaf(hidden=128)", "steps": 2000, "particles": 8, "lr": 3e-3},
    {"formula": "iaf(hidden=128)", "steps": 4000, "particles": 8, "lr": 3e-3},
    {"formula": "iaf(hidden=128)*2", "steps": 2000, "particles": 4, "lr": 5e-3},
    {"formula": "iaf(hidden=128, depth=3)", "steps": 2000, "particles": 4, "lr": 5e-3},
]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=100, help="dimension of x (default 100)")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--formula", default="iaf(hidden=128)", help="our flow")
    parser.add_argument("--steps", type=int, default=2000, help="our training steps")
    parser.add_argument("--particles", type=int, default=4, help="our particles per step")
    parser.add_argument("--lr", type=float, default=5e-3, help="our initial Adam rate")
    parser.add_argument("--target-accept", type=float, default=0.8, help="our NUTS target")
    parser.add_argument("--sweep", action="store_true", help="only our row, for each of SWEEP")
    parser.add_argument("--global-every", type=int, default=0, help="0: no global moves")
    parser.add_argument("--iaf-steps", type=int, default=10_000)
    parser.add_argument("--iaf-particles", type=int, default=8)
    parser.add_argument("--iaf-lr", type=float, default=1e-3)
    parser.add_argument("--skip", nargs="*", default=(), choices=("nuts", "numpyro", "ours"))
    args = parser.parse_args()

    start = time.perf_counter()
    if args.sweep:
        rows = {str(i): ours(argparse.Namespace(**{**vars(args), **c})) for i, c in
                enumerate(SWEEP)}
        print(f"\nsweep of our row, total run {time.perf_counter() - start:.0f} s\n")
        print(markdown([row.cells() for row in rows.values()]))
        return
    runners = {"nuts": plain_nuts, "numpyro": numpyro_neutra, "ours": ours}
    rows = {name: run(args) for name, run in runners.items() if name not in args.skip}
    print(
        f"funnel dim {args.dim} + 1, {args.chains} chains x ({args.warmup} warm-up + "
        f"{args.samples} draws), {jax.device_count()} {jax.default_backend()} device(s), "
        f"total run {time.perf_counter() - start:.0f} s\n"
    )
    print(markdown([row.cells() for row in rows.values()] + [NUTPIE]))
    for other in ("numpyro", "nuts"):
        if "ours" in rows and other in rows:
            us, them = rows["ours"], rows[other]
            print(
                f"\nours / {them.system}: min ESS per gradient "
                f"x{(us.min_ess / us.total) / (them.min_ess / them.total):.2f}, "
                f"min ESS per second x{(us.min_ess / us.wall) / (them.min_ess / them.wall):.2f}"
            )


if __name__ == "__main__":
    main()
