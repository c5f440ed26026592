"""Write the tutorial notebooks from the prose and code held here.

Run ``python tutorials/build.py`` after editing; it rewrites every ``*.ipynb`` in this
folder without outputs (the test suite executes them, ``tests/test_tutorials.py``).
Keeping the notebooks as Python makes their prose and code reviewable in one diff.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(textwrap.dedent(text).strip())


def setup(vi_names: str, *, timing: bool = False, with_flows: bool = False
          ) -> nbformat.NotebookNode:
    """The first code cell: exactly the imports a notebook uses (ruff-clean)."""
    lines = ["import time", ""] if timing else []
    lines += ["import holoviews as hv", "import jax", "import jax.numpy as jnp",
              "import numpy as np", ""]
    lines += ["import flows"] if with_flows else []
    lines += [f"from vi import {vi_names}", "", 'hv.extension("bokeh")']
    return new_code_cell("\n".join(lines))


NORMALIZING_FLOWS = [
    md("""
    # Normalizing flows, one formula at a time

    A normalizing flow turns a standard normal draw z0 into a draw x = T(z0) from a
    richer distribution q. Because T is a bijection with a tractable Jacobian, the
    density of x is known exactly:

    log q(x) = log N(z0; 0, I) - log |det dT/dz0|.

    Variational inference picks the parameters of T that maximise the ELBO,
    E_q[log p(x) - log q(x)], which is the same as minimising KL(q || p) up to the
    constant log Z of the target. In this project a flow is written as a **formula**:
    a string of steps joined by `-`, applied left to right. This notebook walks through
    the language, compares families on small targets, and ends with a check against
    NUTS.
    """),
    setup("NFVI, CheckParametersConvergence, Model, Tracker, plots, targets", timing=True,
          with_flows=True),
    md("""
    ## The formula language

    `"scale-loc"` means: first multiply z0 by a learned positive scale, then add a
    learned location, so x = mu + sigma * z0, the mean-field Gaussian. A step can be
    repeated with `*k` (`planar*8` is eight planar layers, stored together and run under
    one `lax.scan`), and a group in brackets can be repeated as a whole. `flows.parse`
    returns a canonical form, and every registered step has a one-line summary (the
    same list `nfvi flows` prints).
    """),
    code("""
    for formula in ["scale-loc", "Scale - HH*2 - Loc", "(planar-radial)*2", "planar*8"]:
        print(f"{formula!r:24} -> {flows.parse(formula)}")
    print()
    for name in flows.available():
        print(f"{name:10} {flows.lookup(name).summary}")
    """),
    md("""
    A mistyped formula fails straight away with a `flows.FormulaError` that points at
    the offending column and suggests what was probably meant:
    """),
    code("""
    try:
        flows.parse("scale-panar*2")
    except flows.FormulaError as err:
        print(err)
    """),
    md("""
    A `flows.Flow` is the formula bound to a dimension. It is a pure function of its
    parameters: `forward(params, z)` returns the pushed-forward point and the
    log-determinant of the Jacobian. We check that log-determinant against the
    Jacobian JAX computes by automatic differentiation.
    """),
    code("""
    flow = flows.Flow("planar*2", 2)
    params = flow.init(jax.random.key(0), jitter=0.5)
    z = jnp.array([0.3, -1.2])
    x, log_det = flow.forward(params, z)
    jacobian = jax.jacfwd(lambda v: flow.forward(params, v)[0])(z)
    print("log|det J| from the flow:", float(log_det))
    print("log|det J| by autodiff:  ", float(jnp.linalg.slogdet(jacobian)[1]))
    """),
    md("""
    ## Mean field against full rank

    The mean-field family `scale-loc` cannot tilt: it has no correlations. Adding
    Householder reflections, `scale-hh*d-loc`, rotates the scaled draw, which reaches
    every covariance matrix (a full-rank Gaussian). On a correlated Gaussian target
    with correlation rho the best mean-field fit has KL = -log(1 - rho^2) / 2 (it
    matches the conditional variances, not the marginal ones), while the full-rank
    family can reach KL = 0. The target's log Z is known in closed form, so the KL is
    log Z minus the ELBO.
    """),
    code("""
    rho = 0.9
    cov = jnp.array([[1.0, rho], [rho, 1.0]])
    precision = jnp.linalg.inv(cov)

    def correlated(x):
        return -0.5 * x @ precision @ x

    log_Z = 0.5 * float(jnp.linalg.slogdet(2 * jnp.pi * cov)[1])
    gaussian = Model.from_logdensity(correlated, 2)

    fits = {}
    for formula in ["scale-loc", "scale-hh*2-loc"]:
        fits[formula] = NFVI(formula, gaussian, seed=0).fit(2000, n_mc=10, progress=False)
        kl = log_Z - fits[formula].elbo(20_000, key=1)
        draws = np.asarray(fits[formula].sample(20_000, key=2))
        print(f"{formula:15} KL = {kl:.3f}   fitted correlation = {np.corrcoef(draws.T)[0, 1]:.2f}")
    print(f"best mean-field KL in theory: {-0.5 * np.log(1 - rho**2):.3f}")
    """),
    md("""
    ## The four 2-D energies

    Rezende & Mohamed's test densities p(z) proportional to exp(-U(z)) are the classic
    hard cases for a flow: a ring cut in two arcs (U1), a sine-shaped ribbon (U2), and
    the ribbon split or doubled (U3, U4). `vi.targets` holds them with their exact
    log normalising constants, so every fit below is scored by its true KL.
    """),
    code("""
    energies = [targets.get(f"pot{i}") for i in range(1, 5)]
    hv.Layout([plots.density2d(t.log_density, title=f"{t.name}: log Z = {t.log_Z:.3f}")
               for t in energies]).cols(2)
    """),
    md("""
    ## `planar*2` against `planar*8`

    A planar layer bends space along one direction, so two layers can only make a
    crescent, while eight can wrap the ring. We fit both to U1 with the same budget.
    PyMC3's notebook reported KL 1.08 for `planar*2` (30,000 steps) and 0.135 for
    `planar*8` (25,000 steps, 100 particles); here the loop is compiled, so a few
    thousand steps take seconds.
    """),
    code("""
    pot1 = targets.get("pot1")
    ring = targets.model("pot1")
    planar = {}
    for formula in ["planar*2", "planar*8"]:
        start = time.perf_counter()
        planar[formula] = NFVI(formula, ring, seed=0).fit(3000, n_mc=20, progress=False)
        seconds = time.perf_counter() - start
        kl = pot1.log_Z - planar[formula].elbo(20_000, key=1)
        print(f"{formula:9} KL = {kl:.3f}   ({seconds:.1f} s, compilation included)")
    """),
    code("""
    def fitted_density(approx):
        return jax.jit(jax.vmap(approx.log_prob))

    def on_grid(log_density):
        return lambda z: log_density(z.reshape(-1, 2)).reshape(z.shape[:-1])

    hv.Layout([
        plots.compare2d(pot1.log_density, on_grid(fitted_density(planar[f])),
                        np.asarray(planar[f].sample(300, key=3)), grid=100)
        for f in planar
    ]).cols(2)
    """),
    md("""
    ## Tracking parameters and gradients

    A `Tracker` records named functions of the parameters, the parameters themselves
    and the gradients of the loss, every `every` steps, *inside* the compiled loop, so
    watching a fit does not slow it down. Here we follow the norm of the gradient and
    the location of the first planar layer's hyperplane offset b during a fit of U2.
    """),
    code("""
    tracker = Tracker(every=50)
    approx = NFVI("planar*4", targets.model("pot2"), seed=0).fit(
        2000, n_mc=10, callbacks=[tracker], progress=False)
    print(sorted(tracker.history))
    plots.traces({"grad_norm": tracker["grad_norm"]}, tracker.steps) + plots.loss(approx)
    """),
    md("""
    ## Stopping when the parameters settle

    `CheckParametersConvergence(every, tolerance, diff)` compares the parameters with
    their value `every` steps before and stops the fit (by raising `StopIteration`)
    when the largest change falls below `tolerance`, PyMC3's criterion. Stochastic
    gradients keep the parameters jittering at a floor set by the learning rate, so
    the tolerance must sit above that floor; and parameters that converge to zero (the
    location here) make a *relative* change meaningless, so we use the absolute one.
    A fit asked for 20,000 steps stops once the parameters have settled:
    """),
    code("""
    check = CheckParametersConvergence(every=200, tolerance=0.05, diff="absolute")
    approx = NFVI("scale-hh*2-loc", gaussian, seed=0).fit(
        20_000, n_mc=10, callbacks=[check], progress=False)
    print(f"stopped after {len(approx.hist)} steps; last change {check.last_norm:.3f}")
    print(f"KL = {log_Z - approx.elbo(20_000, key=1):.4f}")
    """),
    md("""
    ## A flow against NUTS

    NUTS samples the target exactly (in the limit), so it is the reference. U1 has two
    arcs of equal mass; a good fit puts half of its mass on each side of z1 = 0, and
    its histogram should look like the NUTS one. NumPyro's NUTS runs on the same log
    density through `potential_fn`.
    """),
    code("""
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(potential_fn=lambda z: -pot1.log_density(z)), num_warmup=500,
                num_samples=2000, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.key(0), init_params=jnp.array([1.0, 1.0]))
    nuts_draws = np.asarray(mcmc.get_samples())
    flow_draws = np.asarray(planar["planar*8"].sample(2000, key=4))
    for name, draws in [("NUTS", nuts_draws), ("planar*8", flow_draws)]:
        print(f"{name:9} P(z1 > 0) = {np.mean(draws[:, 0] > 0):.2f}   "
              f"mean radius = {np.mean(np.linalg.norm(draws, axis=1)):.2f}")
    plots.compare2d(pot1.log_density, None, nuts_draws) + \\
        plots.compare2d(pot1.log_density, None, flow_draws)
    """),
    md("""
    NUTS chains may stay on one arc for long stretches (the arcs meet only through a
    low-density gap), which shows up as a P(z1 > 0) away from 0.5; the flow, trained on
    the whole density at once, covers both. Notebook 3 combines the two: the flow
    becomes a transport that makes NUTS easy.
    """),
]


SVI_WITH_NUMPYRO = [
    md("""
    # Stochastic variational inference with NumPyro

    `NFVI` runs one fast, compiled SVI loop for any NumPyro guide: a guide you write by
    hand, NumPyro's autoguides, or a flow written as a formula (`AutoFlow`). This
    notebook fits a Bayesian linear regression all three ways, compares them with NUTS,
    and uses `Predictive` for posterior predictive checks.
    """),
    setup("NFVI, Model, plots"),
    md("""
    ## The model and the data

    y_i = alpha + beta x_i + eps_i, eps_i ~ N(0, sigma^2), with priors
    alpha, beta ~ N(0, 10^2) and sigma ~ HalfNormal(5). We simulate 40 points from
    alpha = 1, beta = 2, sigma = 0.5.
    """),
    code("""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS, Predictive
    from numpyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal


    def regression(x, y=None):
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", dist.Normal(0.0, 10.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-2, 2, 40))
    y = jnp.asarray(1.0 + 2.0 * np.asarray(x) + 0.5 * rng.normal(size=40))
    data = Model(regression, x, y=y)
    """),
    md("""
    ## The reference: NUTS

    With three parameters NUTS is quick and gives the posterior to compare against.
    """),
    code("""
    mcmc = MCMC(NUTS(regression), num_warmup=500, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(0), x, y=y)
    reference = mcmc.get_samples()
    for site in ["alpha", "beta", "sigma"]:
        print(f"{site:6} mean {reference[site].mean():.3f}  sd {reference[site].std():.3f}")
    """),
    md("""
    ## A guide written by hand

    A guide is a NumPyro function with the same latent sites as the model, whose
    distributions carry learnable `numpyro.param`s. Here: independent normals for the
    coefficients and a log-normal for the noise scale (a positive support needs a
    positive distribution). `NFVI` takes it in place of a formula.
    """),
    code("""
    def hand_guide(x, y=None):
        for site in ["alpha", "beta"]:
            loc = numpyro.param(f"{site}_loc", 0.0)
            scale = numpyro.param(f"{site}_scale", 0.1, constraint=dist.constraints.positive)
            numpyro.sample(site, dist.Normal(loc, scale))
        log_loc = numpyro.param("sigma_log_loc", 0.0)
        log_scale = numpyro.param("sigma_log_scale", 0.1,
                                  constraint=dist.constraints.positive)
        numpyro.sample("sigma", dist.LogNormal(log_loc, log_scale))

    hand = NFVI(hand_guide, data, seed=0).fit(3000, n_mc=4, progress=False)
    print({k: round(float(v), 3) for k, v in hand.params.items()})
    """),
    md("""
    ## Autoguides and flow guides

    NumPyro's autoguides work the same way. `AutoFlow(model, formula)` is this
    project's guide: a flow on the flattened unconstrained latent space, so
    `"scale-loc"` is the same family as `AutoDiagonalNormal`, and `"scale-hh*3-loc"` is
    full rank like `AutoMultivariateNormal`. A formula string passed to `NFVI` builds
    the `AutoFlow` for you.
    """),
    code("""
    guides = {
        "hand-written": hand,
        "AutoDiagonalNormal": NFVI(AutoDiagonalNormal(regression), data, seed=0),
        "AutoMultivariateNormal": NFVI(AutoMultivariateNormal(regression), data, seed=0),
        "AutoFlow scale-hh*3-loc": NFVI("scale-hh*3-loc", data, seed=0),
        "AutoFlow planar*2-scale-hh*3-loc": NFVI("planar*2-scale-hh*3-loc", data, seed=0),
    }
    fitted = {name: g if name == "hand-written" else g.fit(3000, n_mc=4, progress=False)
              for name, g in guides.items()}

    sites = ["alpha", "beta", "sigma"]

    def row(name, elbo, draws):
        cells = "   ".join(f"{draws[s].mean():6.3f}±{draws[s].std():.3f}" for s in sites)
        return f"{name:32} {elbo:>8}   {cells}"

    print(f"{'guide':32} {'ELBO':>8}   " + "   ".join(f"{s:>12}" for s in sites))
    print(row("NUTS", "", reference))
    for name, approx in fitted.items():
        print(row(name, f"{approx.elbo(4000, key=2):.2f}", approx.sample(4000, key=1)))
    """),
    md("""
    All guides find the posterior means and spreads: this posterior is close to
    Gaussian, so the bends the planar layers add buy little here. The mean-field
    guides (hand-written and `AutoDiagonalNormal`) cannot express the correlation
    between alpha and beta, which the full-rank flow does. The pair plots show it:
    """),
    code("""
    flow_draws = fitted["AutoFlow scale-hh*3-loc"].sample(2000, key=3)
    plots.pairs({k: reference[k] for k in ["alpha", "beta", "sigma"]}) + \\
        plots.pairs({k: flow_draws[k] for k in ["alpha", "beta", "sigma"]})
    """),
    md("""
    ## Posterior predictive checks

    An approximation carries its guide and fitted parameters, which is exactly what
    NumPyro's `Predictive` needs: it draws parameters from the guide and runs the model
    forward to give new y at any inputs. The bands hold 50% and 90% of the predictive
    mass; about 90% of the observations should fall inside the outer one.
    """),
    code("""
    approx = fitted["AutoFlow scale-hh*3-loc"]
    predictive = Predictive(regression, guide=approx.guide, params=approx.params,
                            num_samples=1000)
    simulated = predictive(jax.random.key(5), x)["y"]
    low, high = np.quantile(simulated, [0.05, 0.95], axis=0)
    print(f"observations inside the 90% band: {np.mean((y >= low) & (y <= high)):.0%}")
    plots.predictive_bands(x, simulated, observed=y) + plots.loss(approx)
    """),
]


MCMC_TRANSPORT = [
    md("""
    # Flows as MCMC transport: NeuTra on the 100-d funnel

    Neal's funnel, log_sigma ~ N(0, 1) and x_i | log_sigma ~ N(0, exp(log_sigma / 2))
    for i = 1..100, defeats plain NUTS: the neck needs tiny steps, the mouth long
    trajectories, and no single step size serves both. NeuTra (Hoffman et al. 2019)
    first fits a flow T by variational inference, then runs NUTS on the pulled-back
    density p(z) proportional to pi(T(z)) |det J_T(z)|. If T is good, p(z) is close to a
    standard normal, which NUTS samples easily; whatever T is, mapping the draws back
    through T gives exact samples of the target. We count the cost in gradient
    evaluations and the quality in effective sample size (ESS).
    """),
    setup("NFVI, Model, plots"),
    code("""
    import arviz as az
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    from vi.neutra import neutra

    DIM = 100

    def funnel():
        log_sigma = numpyro.sample("log_sigma", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(log_sigma / 2)).expand([DIM]).to_event(1))

    def min_ess(posterior):
        ess = az.ess(az.from_dict(posterior=posterior), method="bulk")
        return min(float(ess[name].min()) for name in ess.data_vars)
    """),
    md("""
    ## Plain NUTS

    Two chains of 500 warm-up and 500 kept transitions. NumPyro reports the leapfrog
    steps of each transition; each is one gradient evaluation, and we count the
    warm-up's too.
    """),
    code("""
    mcmc = MCMC(NUTS(funnel), num_warmup=500, num_samples=500, num_chains=2,
                chain_method="vectorized", progress_bar=False)
    mcmc.warmup(jax.random.key(1), collect_warmup=True, extra_fields=("num_steps",))
    warmup_grads = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps", "diverging"))
    plain = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    plain_grads = warmup_grads + int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())
    print(f"plain NUTS: {plain_grads:,} warm-up + sampling gradients, "
          f"min ESS {min_ess(plain):.0f}, "
          f"{int(mcmc.get_extra_fields()['diverging'].sum())} divergences")
    """),
    md("""
    ## Fit a flow, then NUTS through it

    In the model's flat latent vector log_sigma comes first, and the exact transport is
    log_sigma = z_0, x_i = exp(z_0 / 2) z_i. `coupling(split=1, sigma=exp)` has that
    shape: z_0 passes unchanged and scales every other coordinate by exp of a small
    network of z_0. The flow family contains the target, so we fit with the
    sticking-the-landing gradient (`elbo="stl"`), whose noise vanishes as the fit
    becomes exact. (A flow that knows nothing of the structure, `iaf(hidden=128,
    sigma=exp)`, also works, with twice the training.) `vi.neutra.neutra` runs NUTS in
    the flow's latent space and returns ArviZ `InferenceData` whose `attrs` count the
    gradients of training, warm-up and sampling.
    """),
    code("""
    approx = NFVI("coupling(split=1, sigma=exp)", Model(funnel), seed=0).fit(
        1000, n_mc=4, elbo="stl", progress=False)
    print(f"KL(q || p) = {-approx.elbo(4096, key=0):.3f} (the funnel is normalised)")
    idata = neutra(approx, num_warmup=500, num_samples=500, num_chains=2, seed=2)
    ours = {k: idata.posterior[k].values for k in idata.posterior.data_vars}
    attrs = idata.attrs
    print(f"NeuTra NUTS: {attrs['n_grad_training']:,} training + {attrs['n_grad_sampling']:,} "
          f"sampling gradients, min ESS {min_ess(ours):.0f}, "
          f"{int(idata.sample_stats['diverging'].sum())} divergences")
    """),
    md("""
    ## ESS per gradient evaluation

    The fair comparison charges NeuTra for its training. Even so, the flow usually
    buys far more effective samples per gradient than plain NUTS, whose chains crawl
    into the neck (small log_sigma) only rarely. The histograms of log_sigma show the
    difference: its exact marginal is N(0, 1).
    """),
    code("""
    our_grads = attrs["n_grad_training"] + attrs["n_grad_warmup"] + attrs["n_grad_sampling"]
    for name, ess, grads in [("plain NUTS", min_ess(plain), plain_grads),
                             ("NeuTra NUTS", min_ess(ours), our_grads)]:
        print(f"{name:12} min ESS {ess:7.0f}   gradients {grads:9,}   "
              f"ESS per 1000 gradients {1000 * ess / grads:6.2f}")
    plots.marginals({"plain NUTS": plain["log_sigma"].ravel()}) + \\
        plots.marginals({"NeuTra NUTS": ours["log_sigma"].ravel()})
    """),
]


FIT_TO_SAMPLES = [
    md("""
    # Fitting a flow to samples

    Variational inference fits a flow to a density we can evaluate. The other
    direction is density estimation: given only draws x_1..x_n, find the flow q
    maximising the average log-likelihood (1/n) sum log q(x_i), which is minimising
    KL(p || q) up to a constant. `flows.fit_to_samples` does it with minibatch Adam,
    a held-out validation split and early stopping, and returns a fit with `log_prob`
    and `sample`.
    """),
    setup("plots, targets", with_flows=True),
    md("""
    ## Data from a banana

    The banana target has an exact sampler and an exact log normalising constant, so we
    can score a fit by the true KL(p || q) = E_p[log p(x) - log q(x)] on fresh draws.
    """),
    code("""
    banana = targets.get("banana")
    train = np.asarray(banana.sample(jax.random.key(0), 4000))
    test = np.asarray(banana.sample(jax.random.key(1), 20_000))

    def kl_p_q(log_q):
        gap = np.asarray(banana.log_density(test) - banana.log_Z - log_q(test))
        return gap.mean(), gap.std() / np.sqrt(len(gap))
    """),
    md("""
    ## A Gaussian against a spline flow

    The full-rank affine step is the best Gaussian; a stack of rational-quadratic spline
    couplings, with the coordinates reversed between them, can bend.
    """),
    code("""
    fits = {}
    for formula in ["affine", "(rqs-reverse)*3"]:
        fits[formula] = flows.fit_to_samples(formula, train, seed=0, max_epochs=60)
        kl, se = kl_p_q(fits[formula].log_prob)
        print(f"{formula:16} KL(p || q) = {kl:.3f} ± {se:.3f}   "
              f"(best epoch {fits[formula].best_epoch})")
    """),
    code("""
    def on_grid(fit):
        return lambda z: np.asarray(fit.log_prob(jnp.asarray(z, jnp.float32)))

    bounds = ((-6.0, 6.0), (-8.0, 4.0))
    hv.Layout([plots.density2d(banana.log_density, bounds=bounds, samples=train[:500],
                               title="target and training draws")] + [
        plots.density2d(on_grid(fit), bounds=bounds, title=name) for name, fit in fits.items()
    ]).cols(3)
    """),
    md("""
    The learning curves show the early stopping at work: the validation loss stops
    improving and the best epoch's parameters are kept.
    """),
    code("""
    fit = fits["(rqs-reverse)*3"]
    plots.traces({"train": fit.history["train"], "validation": fit.history["validation"]})
    """),
]


def _write(name: str, cells: list[nbformat.NotebookNode]) -> Path:
    for i, cell in enumerate(cells):  # stable ids: rebuilding changes only edited cells
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    path = HERE / name
    nbformat.write(notebook, path)
    return path


NOTEBOOKS = {
    "01_normalizing_flows.ipynb": NORMALIZING_FLOWS,
    "02_svi_with_numpyro.ipynb": SVI_WITH_NUMPYRO,
    "03_flows_as_mcmc_transport.ipynb": MCMC_TRANSPORT,
    "04_fitting_a_flow_to_samples.ipynb": FIT_TO_SAMPLES,
}


if __name__ == "__main__":
    for filename, notebook_cells in NOTEBOOKS.items():
        print("wrote", _write(filename, notebook_cells))
