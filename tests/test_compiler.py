"""vi.compiler: programs compiled off the main thread, in the order asked for."""

import threading
from concurrent.futures import wait

import jax
import jax.numpy as jnp
import numpy as np

from vi.compiler import _POOL, compile_all, compile_async


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
