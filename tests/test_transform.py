"""The NumPyro adapter ``Flow.transform`` (flows/transform.py)."""

from __future__ import annotations

import jax
import numpy as np
import numpyro.distributions as dist

from flows import Flow, FlowTransform

FORMULA, DIM = "scale-planar*2-radial-loc", 3


def _case() -> tuple[Flow, dict, dist.TransformedDistribution]:
    flow = Flow(FORMULA, DIM)
    params = flow.init(jax.random.key(0), jitter=1.0)
    base = dist.Normal(0.0, 1.0).expand([DIM]).to_event(1)
    return flow, params, dist.TransformedDistribution(base, flow.transform(params))


def test_transformed_distribution_log_prob_is_the_flows() -> None:
    flow, params, q = _case()
    assert isinstance(flow.transform(params), FlowTransform)
    x = 2.0 * jax.random.normal(jax.random.key(1), (6, DIM))

    @jax.jit
    def densities(x: jax.Array) -> tuple[jax.Array, ...]:
        # The intermediates path (log-det handed over from the forward pass) too.
        y, intermediates = q.sample_with_intermediates(jax.random.key(2), (5,))
        return (q.log_prob(x), flow.log_prob(params, x),
                q.log_prob(y, intermediates), flow.log_prob(params, y))

    ours_x, flows_x, ours_y, flows_y = densities(x)
    np.testing.assert_allclose(ours_x, flows_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_y, flows_y, rtol=1e-5, atol=1e-4)


def test_sampling_under_jit_is_the_flow_of_the_base_draw() -> None:
    flow, params, _ = _case()

    @jax.jit
    def sample(params: dict, key: jax.Array) -> jax.Array:
        base = dist.Normal(0.0, 1.0).expand([DIM]).to_event(1)
        q = dist.TransformedDistribution(base, flow.transform(params))
        return q.sample(key, (7,))

    key = jax.random.key(3)
    z = dist.Normal(0.0, 1.0).expand([DIM]).to_event(1).sample(key, (7,))
    np.testing.assert_allclose(sample(params, key), flow.forward(params, z)[0],
                               rtol=1e-5, atol=1e-5)


def test_the_transform_passes_through_jit_as_an_argument() -> None:
    flow, params, _ = _case()
    z = jax.random.normal(jax.random.key(4), (4, DIM))
    moved = jax.jit(lambda t, v: t(v))(flow.transform(params), z)
    np.testing.assert_allclose(moved, flow.forward(params, z)[0], rtol=1e-6, atol=1e-6)


def test_inv_undoes_the_transform() -> None:
    flow, params, _ = _case()
    t = flow.transform(params)
    z = jax.random.normal(jax.random.key(5), (4, DIM))

    @jax.jit
    def everything(t: FlowTransform, z: jax.Array) -> tuple[jax.Array, ...]:
        x = t(z)
        return (x, t.inv(x), t.inv.inv(z), t.inv.log_abs_det_jacobian(x, z),
                t.log_abs_det_jacobian(z, x), flow.forward(params, z)[1], t.inv(x[0]))

    x, z_back, x_again, inv_log_det, log_det, flow_log_det, single = everything(t, z)
    np.testing.assert_allclose(z_back, z, atol=1e-4)
    np.testing.assert_allclose(x_again, x, atol=1e-6)
    # log|det| of the inverse at x is minus the forward one at z.
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-4)
    # the same float32 formula, compiled in separate programs: a few ulp apart
    np.testing.assert_allclose(log_det, flow_log_det, rtol=4e-6, atol=1e-6)
    assert t.domain.event_dim == 1 and t.codomain.event_dim == 1
    assert single.shape == (DIM,)  # an unbatched vector works too
    np.testing.assert_allclose(single, z[0], atol=1e-4)
