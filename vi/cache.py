"""An opt-in persistent compilation cache: compiled fit programs kept on disk, so a
new process (a restarted notebook, another ``nfvi`` run) skips XLA compilation."""

from __future__ import annotations

import os
from pathlib import Path

import jax


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nfvi/xla`` (``~/.cache/nfvi/xla`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nfvi" / "xla"


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Keep every compiled program in the folder ``path`` (default
    :func:`default_cache_dir`), however small: JAX's persistent compilation cache,
    keyed by the program's HLO, the compiler options and the JAX version, so a
    program is only ever reused for exactly the same computation.

    In a new process the first ``fit`` of a flow it has compiled before then costs
    tracing only. It applies to the whole process (it is a JAX setting).

    Returns:
        The folder, created if needed.
    """
    if path is not None and not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a folder path or None, got {type(path).__name__}")
    folder = Path(path) if path is not None else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; the compilation cache needs a folder")
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
