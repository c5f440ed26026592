"""A persistent XLA compilation cache for the benchmarks (imported by the scripts
beside it, which run as ``python bench/<script>.py`` with this folder on the path)."""

from __future__ import annotations

import tempfile

import jax


def use_fresh_compile_cache(prefix: str) -> None:
    """Cache every compiled program, however small or quick to compile, in a new
    temporary folder: a fit call that traces and jits afresh then finds the
    program it compiled before, so repeated fits time tracing, not XLA."""
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix=prefix))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
