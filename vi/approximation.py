"""``Approximation``: what a fit returns, and its safe file format."""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from collections.abc import Callable
from functools import cached_property, partial
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer import Predictive, Trace_ELBO

from flows import Flow
from flows.flow import check_key
from flows.options import check_int
from guides.autoflow import AutoFlow, flow_params_from
from vi.diagnostics import MIN_SAMPLES, Diagnosis
from vi.elbo import model_log_density
from vi.model import Model, check_model

if TYPE_CHECKING:
    import arviz as az

FORMAT = "nfvi-approximation"
VERSION = 1


class Approximation:
    """A fitted variational approximation q.

    Attributes:
        guide: the NumPyro guide (an :class:`guides.AutoFlow` for formulas); pass
            it with ``params`` to ``numpyro.infer.Predictive``.
        params: the NumPyro param dict (constrained values).
        hist: the loss (negative ELBO) of every step, NaN where a step was skipped.
        model: the :class:`vi.Model` it was fitted to (``None`` after loading a
            log-density approximation without one).
        flow, flow_params: the :class:`flows.Flow` and its parameters (``None``
            for guides that are not flows); ``formula``, the flow's formula.
        n_grad_evals: training gradient evaluations, steps x particles x restarts.
        n_skipped: steps skipped because the loss or gradient was not finite.
    """

    def __init__(self, *, guide: Callable[..., Any] | None, params: dict[str, Array],
                 model: Model | None, hist: np.ndarray, flow: Flow | None = None,
                 n_grad_evals: int = 0, n_skipped: int = 0, prefix: str | None = None):
        self.guide = guide
        self.prefix = prefix or getattr(guide, "prefix", "auto")
        self.params = params
        self.model = model
        self.hist = hist
        self.n_grad_evals = n_grad_evals
        self.n_skipped = n_skipped
        self.flow = flow if flow is not None else getattr(guide, "flow", None)
        self.flow_params = None
        if self.flow is not None:
            self.flow_params = flow_params_from(self.flow, self.prefix, params)
        self._draws = 0

    @property
    def formula(self) -> str | None:
        """The formula of the fitted flow in canonical form (what ``"auto"`` chose,
        for ``NFVI("auto")``); ``None`` for a guide that is not a flow."""
        return str(self.flow.formula) if self.flow is not None else None

    @property
    def _logdensity(self) -> bool:
        return self.model is None or self.model.dim is not None

    def __repr__(self) -> str:
        what = str(self.flow.formula) if self.flow is not None else type(self.guide).__name__
        finite = self.hist[-100:][np.isfinite(self.hist[-100:])]
        last = finite.mean() if len(finite) else float("nan")
        return f"<Approximation {what}, {len(self.hist)} steps, recent loss {last:.4g}>"

    def _key(self, key: Array | int | None) -> Array:
        if key is None:  # successive calls draw fresh samples, reproducibly
            self._draws += 1
            return jax.random.key(self._draws)
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            return jax.random.key(key)
        check_key(key, "key (None, an int seed or a JAX key)")
        return key

    def sample_latent(self, n: int, key: Array | int | None = None) -> Array:
        """n draws u = T(z), z ~ N(0, I), in the flattened unconstrained space."""
        if self.flow is None:
            raise TypeError("sample_latent needs a flow approximation; use sample()")
        z = jax.random.normal(self._key(key), (n, self.flow.dim))
        return self.flow.forward(self.flow_params, z)[0]

    def sample(self, n: int, key: Array | int | None = None, resample: bool = False
               ) -> Array | dict[str, Array]:
        r"""n draws from q: an array (n, dim) for a log-density model, else a dict
        site -> array (n, ...) in each site's own (constrained) space.

        With ``resample=True``, n draws of sampling-importance-resampling instead:
        M = max(4n, 4096) fresh draws x_i ~ q are weighted by their PSIS-smoothed
        ratios w~_i proportional to p(x_i, y) / q(x_i) (:meth:`diagnose`), and n of
        them are drawn with replacement with probabilities w~_i. They approximate
        draws from the posterior itself, correcting q's bias, as far as the
        diagnosis is usable (k-hat < 0.7); otherwise a warning says so, since then
        the few largest weights dominate and the draws are unreliable. Repeats are
        expected (about n^2 / ESS pairs). This needs a flow guide on a model whose
        density is a function of the flat latent vector (see :meth:`diagnose`).

        References:
            Vehtari et al. (2024), "Pareto smoothed importance sampling", JMLR 25(72).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if resample:
            self._require_model("importance resampling")
            if self._weigh is None:
                raise ValueError("importance resampling needs a flow guide on a model without "
                                 "numpyro.param sites, subsampled plates or mutable state; "
                                 "diagnose() still grades this approximation")
            draw_key, pick_key = jax.random.split(self._key(key))
            diagnosis = self.diagnose(max(4 * n, 4096), draw_key)
            if not diagnosis.usable:
                warnings.warn(f"importance resampling is unreliable here: {diagnosis.verdict}",
                              stacklevel=2)
            return diagnosis.resample(n, pick_key)
        if self.flow is not None:
            latent = self.sample_latent(n, key)
            if self._logdensity:
                return latent
            return self.guide._unpack_and_constrain(latent, self.params)
        draws = Predictive(self.guide, params=self.params, num_samples=n)(
            self._key(key), *self.model.args, **self.model.kwargs)
        draws = {k: v for k, v in draws.items() if not k.startswith("_")}
        return draws[self.model.site] if self._logdensity else draws

    def log_prob(self, x: Array | dict[str, Array]) -> Array:
        r"""log q(x).

        For a log-density model x has shape (..., dim) and
        log q(x) = log N(T^{-1}(x)) + log|det dT^{-1}/dx|. For a NumPyro model x is
        a dict of constrained site values (with optional leading batch axes) and
        the Jacobians of the site bijections are included.
        """
        if self.flow is None or not self.flow.has_inverse:
            raise NotImplementedError("log_prob needs a flow whose steps all invert")
        if self._logdensity:
            return self.flow.log_prob(self.flow_params, jnp.asarray(x))
        if not isinstance(x, dict):
            raise TypeError("for a NumPyro model, log_prob takes a dict site -> value")
        proto = self.guide.prototype_trace
        batch = _batch_shape(x, {name: jnp.shape(proto[name]["value"])
                                 for name in self.guide._init_locs})

        def one(point: dict[str, Array]) -> Array:
            unconstrained, log_det = {}, 0.0
            for name in self.guide._init_locs:
                site = proto[name]
                transform = biject_to(site["fn"].support)
                u = transform.inv(point[name])
                unconstrained[name] = u
                log_det = log_det + jnp.sum(transform.log_abs_det_jacobian(u, point[name]))
            # the guide's own flattening order: its initial locations' site order
            latent = jnp.concatenate([jnp.reshape(unconstrained[name], -1)
                                      for name in self.guide._init_locs])
            return self.flow.log_prob(self.flow_params, latent) - log_det

        flat = jax.tree.map(lambda v: v.reshape((-1, *v.shape[len(batch):])), x)
        return jax.vmap(one)(flat).reshape(batch)

    def elbo_terms(self, num_samples: int = 4096, key: Array | int | None = None
                   ) -> np.ndarray:
        """``num_samples`` independent one-draw ELBO terms
        l_i = log p(x_i, y) - log q(x_i), x_i ~ q (vectorised, one compiled call);
        their mean is the ELBO and sd / sqrt(n) its Monte-Carlo standard error."""
        check_int(num_samples, "num_samples", minimum=1)
        self._require_model("the ELBO")
        model, guide, params, elbo = self.model, self.guide, self.params, Trace_ELBO()

        @jax.jit
        def terms(keys: Array) -> Array:
            return -jax.vmap(lambda k: elbo.loss(k, params, model.fn, guide, *model.args,
                                                  **model.kwargs))(keys)

        return np.asarray(terms(jax.random.split(self._key(key), num_samples)))

    def _require_model(self, what: str) -> None:
        if self.model is None:
            raise ValueError(f"{what} needs the model: load with vi.load(path, model=...)")

    @cached_property
    def _weigh(self) -> Callable[[Any, Array, int], tuple[Array, Array]] | None:
        """``weigh(flow_params, key, m)``: m draws x = T(z), z ~ N(0, I), in the flat
        unconstrained latent space with log w = log p(x) - log q(x) (compiled once per
        m); ``None`` when p is not a function of that vector alone (no flow, or a
        model that the ELBO must trace: see :func:`vi.elbo.model_log_density`)."""
        if self.flow is None or self.model is None:
            return None
        log_density = model_log_density(self.model, self.guide)
        if log_density is None:
            return None
        flow, log_p = self.flow, jax.vmap(log_density)

        @partial(jax.jit, static_argnums=2)
        def weigh(flow_params: Any, key: Array, m: int) -> tuple[Array, Array]:
            x, log_q = flow.sample_and_log_prob(flow_params, key, (m,))
            return x, log_p(x) - log_q

        return weigh

    def diagnose(self, num_samples: int = 4096, key: Array | int | None = None) -> Diagnosis:
        r"""Grade q against the posterior from ``num_samples`` fresh draws x_i ~ q.

        The log importance ratios log w_i = log p(x_i, y) - log q(x_i) give the ELBO
        (their mean) with its standard error, and PSIS (``arviz.psislw``) the Pareto
        shape k-hat of the ratios' right tail: k-hat < 0.5, q is close to p;
        k-hat < 0.7, importance resampling of q's draws gives usable posterior
        expectations; above, q misses mass that reweighting cannot restore (see
        :class:`vi.diagnostics.Diagnosis` for the fields and the verdict).

        For a flow guide on a model whose density is a function of the flat
        unconstrained latent vector (every log-density model; a NumPyro model
        without ``numpyro.param`` sites, subsampled plates or mutable state),
        log w_i = log p(T(z_i)) - log N(z_i; 0, I) + log|det J_T(z_i)| is computed
        there, where log p = -U is NumPyro's potential energy (the same terms as
        :meth:`elbo_terms`), and the draws are kept for :meth:`Diagnosis.resample`.
        Otherwise the terms are :meth:`elbo_terms` and no draws are kept.

        References:
            Yao, Vehtari, Simpson & Gelman (2018), "Yes, but did it work?: evaluating
            variational inference"; Vehtari, Simpson, Gelman, Yao & Gabry (2024),
            "Pareto smoothed importance sampling", JMLR 25(72).
        """
        if (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                or num_samples < MIN_SAMPLES):
            raise ValueError(f"num_samples must be an integer >= {MIN_SAMPLES} (the Pareto fit "
                             f"of the weights' tail needs them), got {num_samples!r}")
        self._require_model("the diagnosis")
        formula = str(self.flow.formula) if self.flow is not None else None
        dim = self.flow.dim if self.flow is not None else None
        if self._weigh is None:
            return Diagnosis.from_log_weights(self.elbo_terms(num_samples, key),
                                              formula=formula, dim=dim)
        latent, log_w = self._weigh(self.flow_params, self._key(key), num_samples)
        draws = (latent if self._logdensity
                 else self.guide._unpack_and_constrain(latent, self.params))
        return Diagnosis.from_log_weights(np.asarray(log_w), draws, formula=formula, dim=dim)

    def elbo(self, num_samples: int = 4096, key: Array | int | None = None) -> float:
        """A precise ELBO estimate, E_q[log p(x, y) - log q(x)], the mean of
        :meth:`elbo_terms`. For a log-density target with known log Z,
        KL(q||p) = log Z - ELBO."""
        return float(np.mean(self.elbo_terms(num_samples, key)))

    def to_inference_data(self, num_samples: int = 1000, key: Array | int | None = None
                          ) -> az.InferenceData:
        """``num_samples`` draws from q as ArviZ ``InferenceData`` (one chain)."""
        check_int(num_samples, "num_samples", minimum=1)
        draws = self.sample(num_samples, key)
        if not isinstance(draws, dict):
            draws = {self.model.site if self.model is not None else "x": draws}
        import arviz as az  # 1.6 s to import: only where it is used

        return az.from_dict(posterior={k: np.asarray(v)[None] for k, v in draws.items()})

    def save(self, path: str | Path) -> Path:
        """Write the flow's formula, parameters, loss history and metadata to ``path``
        (``.npz``; no pickle, so loading a file can never run code). Only flow
        approximations can be saved: a hand-written guide is code."""
        if self.flow is None:
            raise TypeError("only flow approximations (NFVI with a formula) can be saved")
        path = _path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        arrays = {f"param:{k}": np.asarray(v) for k, v in self.params.items()}
        arrays["hist"] = np.asarray(self.hist)
        meta = {
            "format": FORMAT, "version": VERSION, "formula": str(self.flow.formula),
            "dim": self.flow.dim, "prefix": self.prefix,
            "kind": "logdensity" if self._logdensity else "numpyro",
            "site": self.model.site if self.model is not None else "x",
            "jitter": getattr(self.guide, "jitter", None),
            "init_scale": getattr(self.guide, "init_scale", None),
            "n_grad_evals": self.n_grad_evals, "n_skipped": self.n_skipped,
        }
        meta["sha256"] = _digest(arrays, meta)
        arrays["meta"] = np.array(json.dumps(meta))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        return path


def _batch_shape(x: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The leading batch shape shared by the site values ``x``, whose trailing shapes must
    be the sites' own ``shapes``; a ``ValueError`` naming the site otherwise."""
    missing = sorted(set(shapes) - set(x))
    if missing:
        raise ValueError(f"x lacks the latent site(s) {missing}; log_prob takes a dict with a "
                         f"value for each of {sorted(shapes)}")
    batch = None
    for name, event in shapes.items():
        shape = jnp.shape(x[name])
        if shape[len(shape) - len(event):] != event or len(shape) < len(event) or (
                batch is not None and shape[:len(shape) - len(event)] != batch):
            want = f"{batch} + {event}" if batch is not None else f"(..., *{event})"
            raise ValueError(f"x[{name!r}] must have shape {want}, got {shape}")
        batch = shape[:len(shape) - len(event)]
    return batch


def _path(path: object) -> Path:
    """``path`` as a ``Path``, or a ``TypeError`` unless it is a str or path-like."""
    if not isinstance(path, str | PathLike):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {path!r}")
    return Path(path)


def _digest(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "sha256"},
                                  sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load(path: str | Path, model: Model | None = None) -> Approximation:
    """Read an :class:`Approximation` written by :meth:`Approximation.save`.

    A log-density approximation loads without a model (``sample`` and
    ``log_prob`` work; ``elbo`` needs ``model=``). One fitted to a NumPyro model
    needs that ``model`` (a :class:`vi.Model` with its data) to rebuild the guide.

    Raises:
        ValueError: for a missing, truncated, tampered or foreign file, naming it.
    """
    path = _path(path)
    if model is not None:
        check_model(model)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy file: one bare array
            raise ValueError("it holds one array, not an .npz archive")
        with data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable nfvi approximation file ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an nfvi approximation file")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path} has format version {meta.get('version')}, "
                         f"this nfvi reads version {VERSION}")
    if meta.get("sha256") != _digest(arrays, meta):
        raise ValueError(f"{path} has been modified or damaged: its checksum does not match")
    params = {k.removeprefix("param:"): jnp.asarray(v) for k, v in arrays.items()
              if k.startswith("param:")}
    common = {"params": params, "hist": arrays["hist"], "n_grad_evals": meta["n_grad_evals"],
              "n_skipped": meta["n_skipped"]}
    if model is None:
        if meta["kind"] != "logdensity":
            raise ValueError(f"{path} was fitted to a NumPyro model: pass model=Model(fn, "
                             "*args, **kwargs) to load it")
        return Approximation(guide=None, model=None, flow=Flow(meta["formula"], meta["dim"]),
                             prefix=meta["prefix"], **common)
    guide = AutoFlow(model.fn, meta["formula"], prefix=meta["prefix"],
                     init_loc_fn=model.init_loc_fn, jitter=meta["jitter"] or 0.0,
                     init_scale=meta["init_scale"] or 1.0)
    handlers.seed(guide, 0)(*model.args, **model.kwargs)  # builds the guide's prototype
    if guide.latent_dim != meta["dim"]:
        raise ValueError(f"{path} was fitted in {meta['dim']} dimensions, the model given "
                         f"has {guide.latent_dim}")
    return Approximation(guide=guide, model=model, **common)
