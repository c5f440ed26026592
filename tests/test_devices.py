"""Scaling out: fits, chains and minibatch data spread over devices and hosts agree
with the one-device run; minibatch indices are drawn in O(B) without bias.

Several devices are forced on the CPU (``XLA_FLAGS``) in a subprocess, as JAX fixes
the device count when it starts; several hosts are two processes joined by
``jax.distributed`` over localhost.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

from vi import NFVI, Model
from vi.data import DATA_MIN_SIZE, BoundData
from vi.minibatch import MAX_FRACTION, draw_indices, subsampled_plates, with_indices

COMMON = """
import json
import jax, jax.numpy as jnp, numpy as np
import numpyro, numpyro.distributions as dist
from vi import NFVI, Model, neutra, sample

def gaussian(x):
    return -0.5 * jnp.sum((x - 1.0) ** 2 / jnp.arange(1.0, 4.0) ** 2)

rng = np.random.default_rng(0)
X = rng.normal(size=(4096, 4)).astype(np.float32)
y = (rng.random(4096) < 1 / (1 + np.exp(-X @ np.array([1.0, -1.0, 0.5, 0.0])))).astype(
    np.float32)

def logistic(X, y):
    b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0], subsample_size=256) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ b), obs=y[idx])

def flat(tree):
    return {k: np.asarray(v).tolist() for k, v in tree.items()}
"""

FOUR_DEVICES = COMMON + """
assert jax.device_count() == 4
one, out = jax.devices()[:1], {}
model = Model.from_logdensity(gaussian, 3)
for name, kwargs in [("restarts", {"restarts": 4}), ("particles", {"n_mc": 8})]:
    seen = []
    inf = NFVI("affine-loc", model)
    cb = lambda approx, hist, i, inf=inf, seen=seen: seen.append(
        next(iter(inf._state.params.values())).sharding)
    spread = inf.fit(300, progress=False, callbacks=[cb], chunk=100, **kwargs)
    single = NFVI("affine-loc", model).fit(300, progress=False, devices=one, **kwargs)
    out[name] = {"split": inf.layout.split, "spec": str(seen[0].spec),
                 "n_devices": len(seen[0].device_set),
                 "spread": flat(spread.params), "one": flat(single.params),
                 "hist": [spread.hist.tolist(), single.hist.tolist()]}

# minibatch: the data spread along its rows, the same gradient for the same indices
inf = NFVI("scale-loc", Model(logistic, X, y))
approx = inf.fit(200, progress=False)
single = NFVI("scale-loc", Model(logistic, X, y)).fit(200, progress=False, devices=one)
program, layout = inf._program, inf.layout
from vi.plan import plan_fit
plan = plan_fit(inf.guide, n=1, optimizer=None, learning_rate=None, n_mc=1, elbo="trace",
                callbacks=(), progress=False, seed=None, restarts=1, chunk=10,
                max_failures=10, continuing=True)
params = jax.tree.map(lambda a: a[0], inf._state.params)
grads = []
for lay in (layout, None):
    data = program.data(lay)
    grads.append(flat(jax.jit(jax.grad(program.loss(plan, lay)))(
        params, jax.random.key(3), *data.arrays)))
out["minibatch"] = {"data_spec": str(program.data(layout).arrays[0].sharding.spec),
                    "data_rows": list(layout.data_rows), "spread": flat(approx.params),
                    "one": flat(single.params), "grads": grads}

# chains on devices: a few transitions agree with the one-device chains to float error
ap = NFVI("scale-loc", model).fit(300, progress=False, devices=one)
for name, run in [("neutra", lambda d: neutra(ap, 10, 10, num_chains=4, devices=d)),
                  ("sample", lambda d: sample(model, 10, 10, num_chains=4, devices=d,
                                            flow="affine"))]:
    out[name] = [np.asarray(run(d).posterior["x"]).tolist() for d in (None, one)]
try:
    NFVI("scale-loc", model).fit(10, progress=False, n_mc=3, devices=jax.devices())
except ValueError as err:
    out["error"] = str(err)
print("RESULT " + json.dumps(out))
"""

HOST = COMMON + """
import sys
jax.config.update("jax_cpu_collectives_implementation", "gloo")
pid, port = int(sys.argv[1]), sys.argv[2]
if pid >= 0:
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
devices = jax.devices() if pid >= 0 else jax.devices()[:1]
inf = NFVI("affine-loc", Model.from_logdensity(gaussian, 3))
inf.fit(200, progress=False, restarts=2, devices=devices)
approx = inf.fit(100, progress=False, n_mc=2, devices=devices)
print("RESULT " + json.dumps({"n_devices": len(devices), "params": flat(approx.params),
                              "hist": approx.hist.tolist()}))
"""


def _result(stdout: str) -> dict:
    return json.loads(stdout.split("RESULT ", 1)[1])


def _env(devices: int) -> dict[str, str]:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")


def _close(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=tol, err_msg=k)


@pytest.fixture(scope="module")
def four_devices() -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FOUR_DEVICES)],
                          env=_env(4), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _result(proc.stdout)


@pytest.mark.parametrize("name", ["restarts", "particles"])
def test_batch_axis_is_spread_and_agrees(four_devices, name):
    res = four_devices[name]
    assert res["split"] == name
    assert res["n_devices"] == 4
    # restarts lie across the devices; with particles spread the parameters are replicated
    assert res["spec"] == ("P('batch',)" if name == "restarts" else "P()")
    _close(res["spread"], res["one"], 1e-4)
    np.testing.assert_allclose(*res["hist"], rtol=1e-4, atol=1e-4)


def test_minibatch_data_spread_same_gradient(four_devices):
    res = four_devices["minibatch"]
    assert res["data_rows"] == [4096]
    assert res["data_spec"] == "P('batch',)"
    _close(*res["grads"], 1e-3)  # the likelihood is ~ 4096 terms: float error ~1e-4
    _close(res["spread"], res["one"], 1e-4)


@pytest.mark.parametrize("name", ["neutra", "sample"])
def test_chains_on_devices_agree(four_devices, name):
    spread, one = (np.asarray(x) for x in four_devices[name])
    assert spread.shape == (4, 10, 3)
    np.testing.assert_allclose(spread, one, atol=1e-3)


def test_explicit_devices_that_do_not_divide(four_devices):
    assert "n_mc=3" in four_devices["error"] and "multiple of 4" in four_devices["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_hosts_agree_with_one():
    port = str(_free_port())
    script = textwrap.dedent(HOST)
    hosts = [subprocess.Popen([sys.executable, "-c", script, str(pid), port], env=_env(1),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in (0, 1)]
    single = subprocess.run([sys.executable, "-c", script, "-1", port], env=_env(1),
                            capture_output=True, text=True, timeout=300)
    outs = [h.communicate(timeout=300) for h in hosts]
    for host, (_, err) in zip(hosts, outs, strict=True):
        assert host.returncode == 0, err[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    results = [_result(out) for out, _ in outs]
    one = _result(single.stdout)
    assert [r["n_devices"] for r in results] == [2, 2] and one["n_devices"] == 1
    _close(results[0]["params"], results[1]["params"], 0.0)  # one program, one answer
    _close(results[0]["params"], one["params"], 1e-4)
    np.testing.assert_allclose(results[0]["hist"], one["hist"], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ minibatch indices


def _logistic(X, y, batch):
    def model():
        b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
        with numpyro.plate("data", X.shape[0], subsample_size=batch) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ b), obs=y[idx])
    return model


@pytest.mark.parametrize("batch", [50, 400])  # with replacement (B <= N/10), without
def test_minibatch_estimate_is_unbiased(batch):
    n, draws = 2000, 4000
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    y = jnp.asarray(rng.random(n) < 0.4, jnp.float32)
    model = _logistic(X, y, batch)
    b = jnp.array([0.5, -1.0, 0.3])
    trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
    plates = subsampled_plates(trace)
    assert plates == {"data": (n, batch)}

    def estimate(key):
        indices = draw_indices(key, plates)
        return log_density(with_indices(model, indices), (), {}, {"b": b})[0], indices["data"]

    values, indices = jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(0), draws))
    full = float(jnp.sum(dist.Normal(0, 1).log_prob(b))
                 + jnp.sum(dist.Bernoulli(logits=X @ b).log_prob(y)))
    values = np.asarray(values)
    se = values.std() / np.sqrt(draws)
    assert abs(values.mean() - full) < 4 * se
    idx = np.asarray(indices)
    assert idx.min() >= 0 and idx.max() < n
    if batch > MAX_FRACTION * n:  # drawn without replacement: distinct rows
        assert all(len(set(row)) == batch for row in idx[:50])


def test_large_arrays_are_program_inputs():
    big = np.arange(DATA_MIN_SIZE, dtype=np.float32)
    small = np.ones(3, np.float32)
    model = Model(lambda a, b, scale=1.0, w=None: None, big, small, scale=2.0, w=big)
    bound = BoundData.of(model, None)
    assert len(bound.arrays) == 2  # big twice (positional and keyword); small is a constant
    rebuilt = bound.bind(bound.arrays)
    np.testing.assert_array_equal(rebuilt.args[0], big)
    np.testing.assert_array_equal(rebuilt.args[1], small)
    assert rebuilt.kwargs["scale"] == 2.0 and rebuilt.kwargs["w"] is bound.arrays[1]


def test_fit_on_large_data_matches_numpyro_loss():
    """The loss of a fit whose data are program inputs equals NumPyro's Trace_ELBO on
    the same parameters and key (full data, no subsampling: the direct loss)."""
    rng = np.random.default_rng(2)
    n = DATA_MIN_SIZE
    X = rng.normal(size=n).astype(np.float32)

    def model(X):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        numpyro.sample("X", dist.Normal(mu, 1), obs=X)

    inf = NFVI("scale-loc", Model(model, X))
    approx = inf.fit(300, progress=False)
    assert len(inf._program.data(None).arrays) == 1
    posterior_mean = X.sum() / (n + 1)
    posterior_sd = (n + 1) ** -0.5
    mu = approx.sample(4000, key=0)["mu"]
    assert abs(float(np.mean(mu)) - posterior_mean) < 5 * posterior_sd


@pytest.mark.parametrize("devices, match", [
    ("cpu", "list of jax devices"), ([], "empty"), ([0], "jax devices"),
])
def test_bad_devices(devices, match):
    with pytest.raises((TypeError, ValueError), match=match):
        NFVI("scale-loc", Model.from_logdensity(lambda x: -jnp.sum(x * x), 2)).fit(
            10, progress=False, devices=devices)


def test_duplicate_devices():
    device = jax.devices()[0]
    with pytest.raises(ValueError, match="more than once"):
        NFVI("scale-loc", Model.from_logdensity(lambda x: -jnp.sum(x * x), 2)).fit(
            10, progress=False, devices=[device, device])
