"""Where a fit or a sampler runs: one device, or a mesh of several, local or spread
over hosts, through ``jax.sharding`` (no communication layer of our own).

A fit has three batch axes that can be spread over devices: its independent
restarts (the leading axis of the loop state), its Monte-Carlo particles (the draws
of one step's ELBO estimate) and, for a model with a subsampled
``numpyro.plate("data", N, subsample_size=B)``, the N rows of its data arrays.
A :class:`Layout` says which of them lie across the devices of a one-axis
:class:`~jax.sharding.Mesh`; everything else (the flow's parameters, the optimizer's
state of a single restart) is replicated. The compiled chunk is one SPMD program:
XLA inserts the collectives (the mean over particles becomes a cross-device
reduction, the minibatch gather of a row held on another device a masked gather
and a reduction), so a spread run computes what the one-device run computes, up to
the order of floating-point sums, for the same keys (random draws are
partitionable: ``jax_threefry_partitionable``, JAX's default).

Several hosts: call ``jax.distributed.initialize()`` on each, then pass the global
``jax.devices()``; each process runs the same program on its own devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax import Array
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "batch"
"""The name of the mesh axis the batch axes are spread over."""


def resolve_devices(devices: object) -> list[jax.Device] | None:
    """The devices to use: ``None`` stays ``None`` (the caller's default), a non-empty
    sequence of distinct ``jax.Device`` is checked; anything else is a ``TypeError`` or
    ``ValueError`` saying what to pass."""
    if devices is None:
        return None
    if isinstance(devices, jax.Device):
        devices = [devices]
    if isinstance(devices, str | bytes) or not isinstance(devices, Sequence):
        raise TypeError(f"devices must be a list of jax devices (e.g. jax.devices()), "
                        f"got {devices!r}")
    devices = list(devices)
    if not devices:
        raise ValueError("devices is empty: pass jax.devices(), a slice of it, or None")
    bad = [d for d in devices if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(f"devices must hold jax devices (from jax.devices()), got {bad[0]!r}")
    if len({d.id for d in devices}) != len(devices):
        raise ValueError("devices lists a device more than once")
    return devices


def default_devices(devices: list[jax.Device] | None) -> tuple[list[jax.Device], bool]:
    """``(devices, explicit)``: the given ones, or all devices (every host's, after
    ``jax.distributed.initialize()``) when none were given."""
    if devices is None:
        return jax.devices(), False
    return devices, True


@dataclass(frozen=True, eq=False)
class Layout:
    """Which batch axes of a fit lie across ``mesh``.

    Attributes:
        mesh: a one-axis mesh (axis :data:`AXIS`) of the devices used.
        split: ``"restarts"``, ``"particles"`` or ``None`` (neither is spread).
        data_rows: the sizes N of subsampled plates whose data arrays (leading
            dimension N) are spread along N.
    """

    mesh: Mesh
    split: str | None
    data_rows: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal for layouts that compile to the same program."""
        return tuple(d.id for d in self.mesh.devices.flat), self.split, self.data_rows

    @property
    def spread(self) -> NamedSharding:
        """A leading axis spread over the devices, the rest of the array replicated."""
        return NamedSharding(self.mesh, P(AXIS))

    @property
    def replicated(self) -> NamedSharding:
        """A copy of the whole array on every device."""
        return NamedSharding(self.mesh, P())

    def state_shardings(self, state: Any) -> Any:
        """Shardings for a loop state: parameters, optimizer state and keys spread along
        their leading (restart) axis when restarts are split, replicated otherwise; the
        step counters are replicated (the host reads them)."""
        lead = self.spread if self.split == "restarts" else self.replicated
        return type(state)(*(jax.tree.map(lambda _, s=lead: s, part) for part in
                             (state.params, state.opt_state, state.key)),
                           self.replicated, self.replicated, self.replicated)

    def place(self, tree: Any, shardings: Any) -> Any:
        """``tree`` put on the devices with ``shardings`` (a tree of the same shape);
        across hosts each process gives the same host values."""
        if jax.process_count() == 1:
            return jax.tree.map(jax.device_put, tree, shardings)
        return jax.tree.map(_place_global, tree, shardings)

    def spread_batch(self, x: Array) -> Array:
        """``x`` (leading axis: particles) constrained to lie across the devices when
        particles are split; unchanged otherwise."""
        if self.split != "particles":
            return x
        return jax.lax.with_sharding_constraint(x, self.spread)

    def to_host(self, tree: Any) -> Any:
        """``tree`` readable on this process: arrays held partly on another host's
        devices are gathered (every process must call this together)."""
        if all(getattr(a, "is_fully_addressable", True) for a in jax.tree.leaves(tree)):
            return tree
        return multihost_utils.process_allgather(tree, tiled=True)


def _place_global(a: Any, sharding: NamedSharding) -> Any:
    """``a`` on a mesh that spans hosts: every process passes the same value, which
    goes through host memory (a random key as its key data)."""
    if not getattr(a, "is_fully_addressable", True):  # already global: re-lay it
        return a if a.sharding == sharding else jax.jit(lambda v: v, out_shardings=sharding)(a)
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        data = jax.device_put(np.asarray(jax.random.key_data(a)), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    return jax.device_put(np.asarray(a), sharding)


def mesh_of(devices: Sequence[jax.Device]) -> Mesh:
    """A one-axis mesh (axis :data:`AXIS`) over ``devices``, in their order."""
    return Mesh(np.asarray(devices, dtype=object), (AXIS,))


def fit_layout(devices: object, *, restarts: int, particles: int, can_split_particles: bool,
               plate_sizes: Sequence[int]) -> Layout | None:
    """The :class:`Layout` of a fit, or ``None`` for a plain one-device run.

    With more than one device, the restarts are spread when their number is a
    multiple of the device count, else the particles (``n_mc``) when theirs is (and
    the ELBO averages independent particles), and the data of every subsampled plate
    whose size N is a multiple. With ``devices=None`` (all devices) a fit with
    nothing to spread runs on one device; with devices given explicitly it is a
    ``ValueError`` that says which counts to change.
    """
    devices, explicit = default_devices(resolve_devices(devices))
    n = len(devices)
    if n == 1:
        return Layout(mesh_of(devices), None) if explicit else None
    split = None
    if restarts % n == 0:
        split = "restarts"
    elif particles % n == 0 and can_split_particles:
        split = "particles"
    data_rows = tuple(sorted({int(s) for s in plate_sizes if s % n == 0}))
    if split is None and not data_rows:
        if not explicit:
            return None
        raise ValueError(
            f"nothing of this fit divides over {n} devices: restarts={restarts}, "
            f"n_mc={particles}{' (with this ELBO)' if not can_split_particles else ''}"
            f"{', subsampled plates of sizes ' + str(list(plate_sizes)) if plate_sizes else ''}"
            f"; give restarts or n_mc a multiple of {n}, or fewer devices")
    return Layout(mesh_of(devices), split, data_rows)


def chain_layout(devices: object, num_chains: int) -> Layout | None:
    """The :class:`Layout` of a sampler whose chains are a leading axis: spread over
    the devices when ``num_chains`` is a multiple of their number; ``None`` on one
    device. Explicit devices that do not divide the chains are a ``ValueError``."""
    devices, explicit = default_devices(resolve_devices(devices))
    n = len(devices)
    if n == 1:
        return Layout(mesh_of(devices), None) if explicit else None
    if num_chains % n:
        if not explicit:
            return None
        raise ValueError(f"num_chains={num_chains} does not divide over {n} devices: give "
                         f"a multiple of {n} chains, or fewer devices")
    return Layout(mesh_of(devices), "restarts")
