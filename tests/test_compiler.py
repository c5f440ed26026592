"""vi.compiler: programs compiled off the main thread, in the order asked for."""

import threading
from concurrent.futures import wait

import jax
import jax.numpy as jnp
import numpy as np

from flows.flow import RUN_ONCE
from vi.compiler import _POOL, call_async, compile_all, compile_async


def test_a_compile_after_another_starts_only_when_that_one_is_done():
    gate = threading.Event()
    running = _POOL.submit(gate.wait)  # stands for a long compile still running
    later = compile_async(jax.jit(lambda x: 2 * x + 1).lower(jnp.ones(3)), after=running)
    # compiling this program takes well under a second; it must wait for the gate
    done, _ = wait([later], timeout=1.0)
    assert not done
    gate.set()
    np.testing.assert_array_equal(later.result(timeout=60)(jnp.arange(3.0)), [1.0, 3.0, 5.0])


def test_compile_all_returns_each_program_under_its_name():
    x = jnp.arange(4.0)
    compiled = compile_all({"square": lambda: jax.jit(lambda v: v**2).lower(x),
                            "total": lambda: jax.jit(jnp.sum).lower(x)})
    assert list(compiled) == ["square", "total"]
    np.testing.assert_array_equal(compiled["square"](x), x**2)
    assert float(compiled["total"](x)) == 6.0


def test_compile_all_waits_for_the_programs_started_before_it():
    # a program already compiling (vi.sample's re-fit) comes back with the others
    x = jnp.arange(4.0)
    early = compile_async(jax.jit(lambda v: v + 1).lower(x))
    compiled = compile_all({"square": lambda: jax.jit(lambda v: v**2).lower(x)},
                           started={"early": early})
    assert sorted(compiled) == ["early", "square"]
    np.testing.assert_array_equal(compiled["early"](x), x + 1)
    np.testing.assert_array_equal(compiled["square"](x), x**2)


def test_a_program_compiled_to_run_once_computes_what_an_optimised_one_does():
    # RUN_ONCE skips LLVM's optimisations (compile time); what it computes may differ
    # by rounding only: normal draws and a reduction, float32
    def draws(key):
        x = jax.random.normal(key, (1000, 7))
        return x, jnp.sum(jnp.tanh(x) ** 2, axis=0)

    lowered = jax.jit(draws).lower(jax.random.key(0))
    fast = compile_async(lowered, options=RUN_ONCE).result()
    optimised = compile_async(lowered, options={"xla_backend_optimization_level": 2}).result()
    for a, b in zip(fast(jax.random.key(0)), optimised(jax.random.key(0)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # and it is not a no-op: another key, other draws
    assert not np.allclose(fast(jax.random.key(1))[0], optimised(jax.random.key(0))[0])


def test_a_call_runs_on_the_pool_and_gives_what_the_main_thread_would():
    # the flow's initial parameters of vi.sample: lowered here, compiled and run on a
    # worker thread, the bits of flow.init on the main thread
    from functools import partial

    from flows import Flow

    flow = Flow("(coupling(hidden=8)-reverse)*2-sas", 5)
    key = jax.random.key(3)
    lowered = jax.jit(partial(flow.init, jitter=0.0)).lower(key)
    threads = []

    def init():
        threads.append(threading.current_thread().name)
        return lowered.compile(RUN_ONCE)(key)

    pooled = call_async(init).result(timeout=60)
    assert threads[0].startswith("nfvi-compile")
    here = flow.init(key, 0.0)
    for a, b in zip(jax.tree.leaves(pooled), jax.tree.leaves(here), strict=True):
        np.testing.assert_array_equal(a, b)
