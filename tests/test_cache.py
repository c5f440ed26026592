"""vi.cache: the opt-in persistent compilation cache, checked in fresh processes (it is a
process-wide JAX setting)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vi import enable_compilation_cache

FIT = """
import sys, numpy as np
import jax.numpy as jnp
import vi
vi.enable_compilation_cache(sys.argv[1])
model = vi.Model.from_logdensity(lambda x: -0.5 * jnp.sum((x - 1.0) ** 2), dim=2)
approx = vi.NFVI("planar*3", model).fit(1500, n_mc=2, progress=False)
np.save(sys.argv[2], approx.hist)
"""


def test_a_second_process_finds_every_program_in_the_cache(tmp_path):
    cache = tmp_path / "xla"
    runs = []
    for i in range(2):
        subprocess.run([sys.executable, "-c", FIT, str(cache), str(tmp_path / f"h{i}.npy")],
                       check=True, capture_output=True, timeout=300)
        runs.append(sorted(p.name for p in cache.iterdir()))
    assert runs[0], "the first process wrote no compiled programs"
    assert runs[1] == runs[0], "the second process compiled programs the first had cached"
    np.testing.assert_array_equal(np.load(tmp_path / "h0.npy"), np.load(tmp_path / "h1.npy"))


def test_a_file_is_not_a_cache_folder(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="needs a folder"):
        enable_compilation_cache(path)
    with pytest.raises(TypeError, match="folder path"):
        enable_compilation_cache(3)
    assert not Path(tmp_path / "never").exists()
