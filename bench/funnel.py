"""Benchmark: MCMC on the 100-d funnel, plain NUTS vs NumPyro NeuTra vs nfvi NeuTra vs
nfvi's flow-adapted NUTS (``vi.sample``) vs nutpie.

The target (REFERENCE.md): log_sigma ~ N(0, 1), x_i | log_sigma ~ N(0, exp(log_sigma / 2)),
i = 1..100. Every system runs 2 chains x 1000 warm-up + 1000 draws, in this one process:

- plain NumPyro NUTS on the model;
- NumPyro ``AutoIAFNormal`` fitted by SVI (10,000 steps x 8 particles), then
  ``NeuTraReparam`` + NUTS;
- ours, one row per configuration in ``OURS`` (or the one given by ``--formula``):
  ``NFVI(formula).fit(steps, n_mc=particles, elbo=elbo)`` with Adam whose rate ``lr``
  is cosine-decayed over the steps, then ``vi.neutra`` (NUTS in the flow's latent space,
  optionally with global independence proposals) at its ``target_accept``;
- ``vi.sample(adapt="flow")``: NUTS whose warm-up learns the transport from the chains'
  draws and gradients (Fisher divergence), with the default flow (or ``--sample-flow``),
  and ``vi.sample(adapt="diag")``, NumPyro's NUTS through the same code (the baseline);
- nutpie with its flow adaptation, when ``import nutpie`` works (an optional dependency
  of this bench only: ``pip install "nutpie[nnflow]" pymc``); else its row is skipped
  with a message.

Per row: gradient evaluations for training (steps x particles), warm-up and sampling
(NUTS leapfrog steps, plus one per global proposal), min bulk ESS over all 101
coordinates, min ESS per 1000 gradient evaluations (training included), min ESS per
second of wall time (training, compilation and sampling included), divergences in the
kept draws. The published nutpie figures are a reference row.

    python bench/funnel.py                       # the full table (~9 min on 2 CPU cores, nutpie ~6)
    python bench/funnel.py --dim 10 --warmup 200 --samples 200 --steps 500   # a smoke run
    python bench/funnel.py --skip nuts numpyro --repeat 3    # our rows, 3 seeds each
    python bench/funnel.py --sample-repeat 3     # vi.sample's wall: median of 3 calls
                                                 # (and a second call on one Model)

In the model's flattened latent order (log_sigma first, then x) the exact transport is
log_sigma = z_0, x_i = exp(z_0 / 2) z_i. Our two rows:

- ``coupling(split=1, sigma=exp)`` has that shape: x_0 = z_0 and every other coordinate
  is scaled by exp of a network of z_0, which must learn the linear log-scale z_0 / 2.
  It uses what the user knows of the model (which coordinate is the scale), as a
  hand-written reparametrisation would.
- ``iaf(hidden=128, sigma=exp)`` knows nothing of the structure: x_i's scale may depend
  on any z_{<i}, and the network must find that only z_0 matters.

Both are fitted with the sticking-the-landing gradient (``elbo="stl"``): the family
contains the target, so its gradient noise vanishes at the fit. At the same budgets
the standard gradient ends at KL ~0.18 (coupling, 1000 x 4) and ~0.36 (iaf, 2000 x 4),
STL at ~0.03 and ~0.07. A near-perfect flow makes the pulled-back target nearly
N(0, I): NUTS then runs 7 leapfrog steps per draw at target acceptance 0.7 (at 0.8
the step size shrinks and trajectories double to 15), and its draws are close to
antithetic, so min ESS can exceed the number of draws. Min ESS varies between seeds
(``--repeat``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

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

from vi import NFVI, Model, sample
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


def ours(args: argparse.Namespace, config: dict, seed: int = 4) -> Row:
    """Fit ``config["formula"]``, then NeuTra NUTS; ``seed`` seeds the fit (the chains
    get seed + 1)."""
    start = time.perf_counter()
    steps, particles, lr = config["steps"], config["particles"], config["lr"]
    schedule = optax.cosine_decay_schedule(lr, steps, alpha=0.01)
    approx = NFVI(config["formula"], Model(funnel, args.dim), seed=seed).fit(
        steps,
        optimizer=optax.adam(schedule),
        n_mc=particles,
        elbo=config["elbo"],
        progress=False,
        chunk=min(steps, 1000),
    )
    fitted = time.perf_counter()
    idata = neutra(
        approx,
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        global_every=args.global_every or None,
        seed=seed + 1,
        target_accept_prob=config["target_accept"],
    )
    wall = time.perf_counter() - start
    posterior = {k: idata.posterior[k].values for k in idata.posterior.data_vars}
    a = idata.attrs
    print(
        f"  ours {config} seed {seed}: fit {fitted - start:.1f} s (KL "
        f"{-approx.elbo(4096, key=0):.3f}), NUTS compile {a['compile_time']:.1f} s, warm-up "
        f"{a['warmup_time']:.2f} s, sampling {a['sampling_time']:.2f} s, mean leapfrog "
        f"steps {float(idata.sample_stats['n_steps'].mean()):.1f}",
        flush=True,
    )
    moves = ""
    if args.global_every:
        rate = idata.attrs["global_acceptance_rate"]
        moves = f", global proposal every {args.global_every} (accepted {rate:.0%})"
    return Row(
        f"nfvi `{config['formula']}` ({steps} x {particles}, lr {lr:g}, elbo={config['elbo']}) "
        f"+ vi.neutra (target accept {config['target_accept']}){moves}",
        a["n_grad_training"],
        a["n_grad_warmup"],
        a["n_grad_sampling"],
        min_bulk_ess(posterior),
        int(idata.sample_stats["diverging"].sum()),
        wall,
    )


def flow_sample(args: argparse.Namespace, adapt: str, model: Model | None = None) -> Row:
    """``vi.sample`` on the funnel: its warm-up adapts a flow (``"flow"``) or NumPyro's
    diagonal mass matrix (``"diag"``). JAX's caches are cleared first, so every call on
    a new ``Model`` (the default) traces and compiles as a new process's first call
    would; a ``model`` sampled before with the same settings reuses its programs (a
    user's second call)."""
    jax.clear_caches()
    start = time.perf_counter()
    flow = args.sample_flow if adapt == "flow" else None
    idata = sample(model or Model(funnel, args.dim), num_warmup=args.warmup,
                   num_samples=args.samples, num_chains=args.chains, adapt=adapt, flow=flow,
                   seed=6)
    wall = time.perf_counter() - start
    a = idata.attrs
    print(
        f"  vi.sample(adapt={adapt!r}{', flow ' + a['flow'] if a['flow'] else ''}): compile "
        f"{a['compile_time']:.1f} s, "
        f"training {a['training_time']:.1f} s, warm-up {a['warmup_time']:.1f} s, sampling "
        f"{a['sampling_time']:.1f} s; transport updates {a['n_transport_updates']}, re-fits "
        f"kept {a['n_refits_kept']}/{a['n_refits']}, held-out Fisher loss "
        f"{a['fisher_loss']:.3f}, mean leapfrog steps "
        f"{float(idata.sample_stats['n_steps'].mean()):.1f}",
        flush=True,
    )
    posterior = {k: idata.posterior[k].values for k in idata.posterior.data_vars}
    what = f"adapt={adapt!r}" + (f", flow `{a['flow']}`" if adapt == "flow" else "")
    return Row(f"nfvi vi.sample({what})", a["n_grad_training"], a["n_grad_warmup"],
               a["n_grad_sampling"], min_bulk_ess(posterior), a["divergences"], wall)


def median_call(calls: list[Row]) -> Row:
    """One row for repeated calls of the same deterministic run: their median wall time
    (every wall printed); the counts and ESS must agree between calls."""
    first = calls[0]
    check_same_draws(calls)
    walls = sorted(c.wall for c in calls)
    if len(calls) > 1:
        print(f"  vi.sample(adapt='flow') walls: {', '.join(f'{w:.1f}' for w in walls)} s; "
              f"median {float(np.median(walls)):.1f} s", flush=True)
    return Row(first.system, first.training, first.warmup, first.sampling, first.min_ess,
               first.divergences, float(np.median(walls)))


def check_same_draws(calls: list[Row]) -> None:
    """Raise unless repeated calls of one deterministic run drew the same chains."""
    if len({(c.training, c.warmup, c.sampling, c.min_ess, c.divergences) for c in calls}) > 1:
        raise RuntimeError("repeated vi.sample calls drew different chains")


def nutpie_flow(args: argparse.Namespace) -> Row | None:
    """nutpie's NUTS with its normalizing-flow adaptation on the same funnel (PyMC model,
    JAX backend), or None with a message when nutpie or PyMC is not installed. Its
    training uses the gradients the chains computed, so its count is the leapfrog steps.
    It runs at nutpie's default ``cores`` (all of them: its chains side by side), as a
    user would; earlier runs passed ``cores=1`` (chains one after the other), which on 2
    cores took 384-418 s against 325 s at the default, with the same draws."""
    try:
        import nutpie
        import pymc as pm
    except ImportError as err:
        print(f"nutpie row skipped: {err} (pip install 'nutpie[nnflow]' pymc to run it)")
        return None
    x64 = jax.config.jax_enable_x64  # PyTensor's JAX linker turns float64 on, globally
    start = time.perf_counter()
    with pm.Model() as pymc_model:
        log_sigma = pm.Normal("log_sigma")
        pm.Normal("x", mu=0, sigma=pm.math.exp(log_sigma / 2), shape=args.dim)
    compiled = nutpie.compile_pymc_model(pymc_model, backend="jax", gradient_backend="jax")
    trace = nutpie.sample(compiled.with_transform_adapt(), transform_adapt=True,
                          chains=args.chains, tune=args.warmup, draws=args.samples, seed=7,
                          progress_bar=False)
    wall = time.perf_counter() - start
    jax.config.update("jax_enable_x64", x64)  # the rows after this one run as before it
    posterior = {k: trace.posterior[k].values for k in ("log_sigma", "x")}
    return Row("nutpie (flow adaptation)", 0, int(trace.warmup_sample_stats.n_steps.sum()),
               int(trace.sample_stats.n_steps.sum()), min_bulk_ess(posterior),
               int(trace.sample_stats.diverging.sum()), wall)


OURS = [
    {"formula": "coupling(split=1, sigma=exp)", "steps": 1000, "particles": 4, "lr": 1e-2,
     "elbo": "stl", "target_accept": 0.7},
    {"formula": "iaf(hidden=128, sigma=exp)", "steps": 2000, "particles": 4, "lr": 5e-3,
     "elbo": "stl", "target_accept": 0.7},
]


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
    parser.add_argument("--formula", help="one row of ours with this flow instead of OURS")
    parser.add_argument("--steps", type=int, default=1000, help="with --formula")
    parser.add_argument("--particles", type=int, default=4, help="with --formula")
    parser.add_argument("--lr", type=float, default=1e-2, help="with --formula")
    parser.add_argument("--elbo", default="stl", choices=("stl", "trace"), help="with --formula")
    parser.add_argument("--target-accept", type=float, default=0.7, help="with --formula")
    parser.add_argument("--repeat", type=int, default=1, help="our rows with seeds 4, 6, ...")
    parser.add_argument("--global-every", type=int, default=0, help="0: no global moves")
    parser.add_argument("--iaf-steps", type=int, default=10_000)
    parser.add_argument("--iaf-particles", type=int, default=8)
    parser.add_argument("--iaf-lr", type=float, default=1e-3)
    parser.add_argument("--sample-flow", help="vi.sample's flow (default: its DEFAULT_FLOW)")
    parser.add_argument("--sample-repeat", type=int, default=1,
                        help="calls of vi.sample(adapt='flow'), the later half after nutpie's "
                             "run; its row gives the median wall (the same draws each call)")
    parser.add_argument("--skip", nargs="*", default=(),
                        choices=("nuts", "numpyro", "ours", "sample-flow", "sample-diag",
                                 "nutpie"))
    args = parser.parse_args()
    configs = OURS
    if args.formula:
        configs = [{"formula": args.formula, "steps": args.steps, "particles": args.particles,
                    "lr": args.lr, "elbo": args.elbo, "target_accept": args.target_accept}]

    start = time.perf_counter()
    rows: dict[str, Row] = {}
    if "nuts" not in args.skip:
        rows["nuts"] = plain_nuts(args)
    if "numpyro" not in args.skip:
        rows["numpyro"] = numpyro_neutra(args)
    if "ours" not in args.skip:
        for i, config in enumerate(configs):
            for r in range(args.repeat):
                rows[f"ours {i} {r}"] = ours(args, config, seed=4 + 2 * r)
    flow_calls: list[Row] = []
    repeats = max(args.sample_repeat, 1) if "sample-flow" not in args.skip else 0
    before = (repeats + 1) // 2  # the rest after nutpie: the machine's speed drifts
    if repeats:  # the first call's Model sampled again at once: a user's second call
        model = Model(funnel, args.dim)
        flow_calls.append(flow_sample(args, "flow", model))
        again = flow_sample(args, "flow", model)
        check_same_draws([flow_calls[0], again])
        rows["ours sample flow again"] = replace(
            again, system=again.system.replace("vi.sample(", "vi.sample again (same Model, ", 1))
    flow_calls += [flow_sample(args, "flow") for _ in range(before - 1)]
    if "sample-diag" not in args.skip:
        rows["ours sample diag"] = flow_sample(args, "diag")
    nutpie_row = None if "nutpie" in args.skip else nutpie_flow(args)
    if nutpie_row is not None:
        rows["nutpie"] = nutpie_row
    flow_calls += [flow_sample(args, "flow") for _ in range(repeats - before)]
    if flow_calls:
        rows["ours sample flow"] = median_call(flow_calls)
    last = ("ours sample flow", "ours sample flow again", "ours sample diag", "nutpie")
    rows = {name: rows[name] for name in [*(n for n in rows if n not in last), *last]
            if name in rows}
    print(
        f"funnel dim {args.dim} + 1, {args.chains} chains x ({args.warmup} warm-up + "
        f"{args.samples} draws), {jax.device_count()} {jax.default_backend()} device(s), "
        f"total run {time.perf_counter() - start:.0f} s\n"
    )
    print(markdown([row.cells() for row in rows.values()] + [NUTPIE]))
    for name, us in rows.items():
        if not name.startswith("ours"):
            continue
        for other in ("nutpie", "numpyro", "nuts"):
            if other in rows:
                them = rows[other]
                print(
                    f"\n{us.system} / {them.system}: min ESS per gradient "
                    f"x{(us.min_ess / us.total) / (them.min_ess / them.total):.2f}, "
                    f"min ESS per second x{(us.min_ess / us.wall) / (them.min_ess / them.wall):.2f}"
                )
        print(f"{us.system} / nutpie (published): min ESS per gradient "
              f"x{(us.min_ess / us.total) / (1836 / 42527):.2f}")


if __name__ == "__main__":
    main()
