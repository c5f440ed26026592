# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fitting a flow to samples
#
# Variational inference fits a flow to a density we can evaluate. The other
# direction is density estimation: given only draws x_1..x_n, find the flow q
# maximising the average log-likelihood (1/n) sum log q(x_i), which is minimising
# KL(p || q) up to a constant. `flows.fit_to_samples` does it with minibatch Adam,
# a held-out validation split and early stopping, and returns a fit with `log_prob`
# and `sample`.

# %% tags=["remove-output"]
import holoviews as hv
import jax
import jax.numpy as jnp
import numpy as np

import flows
from vi import plots, targets

hv.extension("matplotlib", logo=False, display_formats=["png"])
hv.output(dpi=72)

# %% [markdown]
# ## Data from a banana
#
# The banana target has an exact sampler and an exact log normalising constant, so we
# can score a fit by the true KL(p || q) = E_p[log p(x) - log q(x)] on fresh draws.

# %%
banana = targets.get("banana")
train = np.asarray(banana.sample(jax.random.key(0), 4000))
test = np.asarray(banana.sample(jax.random.key(1), 20_000))

def kl_p_q(log_q):
    gap = np.asarray(banana.log_density(test) - banana.log_Z - log_q(test))
    return gap.mean(), gap.std() / np.sqrt(len(gap))


# %% [markdown]
# ## A Gaussian against a spline flow
#
# The full-rank affine step is the best Gaussian; a stack of rational-quadratic spline
# couplings, with the coordinates reversed between them, can bend.

# %%
fits = {}
for formula in ["affine", "(rqs-reverse)*3"]:
    fits[formula] = flows.fit_to_samples(formula, train, seed=0, max_epochs=60)
    kl, se = kl_p_q(fits[formula].log_prob)
    print(f"{formula:16} KL(p || q) = {kl:.3f} ± {se:.3f}   "
          f"(best epoch {fits[formula].best_epoch})")


# %%
def on_grid(fit):
    return lambda z: np.asarray(fit.log_prob(jnp.asarray(z, jnp.float32)))

bounds = ((-6.0, 6.0), (-8.0, 4.0))
hv.Layout([plots.density2d(banana.log_density, bounds=bounds, samples=train[:500],
                           title="target and training draws")] + [
    plots.density2d(on_grid(fit), bounds=bounds, title=name) for name, fit in fits.items()
]).cols(3)

# %% [markdown]
# The learning curves show the early stopping at work: the validation loss stops
# improving and the best epoch's parameters are kept.

# %%
fit = fits["(rqs-reverse)*3"]
plots.traces({"train": fit.history["train"], "validation": fit.history["validation"]})
