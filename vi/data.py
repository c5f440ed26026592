"""A model's data as inputs of the compiled fit program, put on the device once.

``Model(fn, X, y)`` binds arrays to a model. A jitted function that closes over an
array bakes it into the compiled program as a constant: compile time and memory
grow with the data (10^7 x 20 floats: 800 MB of constants, 18 s of lowering and
compiling). So every array argument of :data:`DATA_MIN_SIZE` elements or more, and
every array spread over devices (:class:`vi.devices.Layout`), is instead an input of
the compiled chunk: put on the device (or spread over the devices) once when the
program is built, then passed by reference to every chunk, never copied. Smaller
arrays (NumPy ones as jax arrays, so that traced minibatch indices can index them)
and everything that is not an array stay constants of the program.

The model then sees those arrays as traced values, as under NumPyro's jitted
``SVI.update``: shape arithmetic and ``jnp`` operations work; NumPy calls or
boolean-mask indexing on them do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from vi.devices import Layout

DATA_MIN_SIZE = 65_536
"""Arrays with at least this many elements are inputs of the program, not constants."""


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | jax.Array) and np.ndim(value) > 0


@dataclass(frozen=True, eq=False)
class BoundData:
    """A model's arguments split into the arrays passed to the program (``arrays``)
    and the rest (kept in ``leaves``, with ``None`` where an array goes)."""

    model: Any
    treedef: Any
    leaves: tuple[Any, ...]
    where: tuple[int, ...]
    arrays: tuple[Array, ...]

    @classmethod
    def of(cls, model: Any, layout: Layout | None) -> BoundData:
        """Bind ``model``'s (a :class:`vi.Model`) arguments, placed by ``layout``."""
        leaves, treedef = jax.tree.flatten((list(model.args), dict(model.kwargs)))
        rows = () if layout is None else layout.data_rows
        where = tuple(i for i, leaf in enumerate(leaves) if _is_array(leaf) and (
            np.size(leaf) >= DATA_MIN_SIZE or np.shape(leaf)[0] in rows))
        if layout is None:
            arrays = tuple(jnp.asarray(leaves[i]) for i in where)
        else:
            arrays = tuple(layout.place(leaves[i], layout.spread if np.shape(leaves[i])[0]
                                        in rows else layout.replicated) for i in where)
        # the other NumPy arrays become (constant) jax arrays, so that the model can
        # index them with the traced minibatch indices
        kept = tuple(None if i in where else jnp.asarray(leaf) if isinstance(leaf, np.ndarray)
                     and leaf.dtype != object else leaf for i, leaf in enumerate(leaves))
        return cls(model, treedef, kept, where, arrays)

    @property
    def shardings(self) -> tuple[Any, ...]:
        """The shardings of ``arrays``, as placed."""
        return tuple(a.sharding for a in self.arrays)

    def bind(self, arrays: tuple[Array, ...]) -> SimpleNamespace:
        """The model with ``arrays`` (traced, inside the program) as its data:
        ``.fn``, ``.args``, ``.kwargs`` and ``.log_density``."""
        leaves = list(self.leaves)
        for i, array in zip(self.where, arrays, strict=True):
            leaves[i] = array
        args, kwargs = jax.tree.unflatten(self.treedef, leaves)
        return SimpleNamespace(fn=self.model.fn, args=tuple(args), kwargs=kwargs,
                               log_density=self.model.log_density)
