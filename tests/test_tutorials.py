"""Every tutorial notebook runs top to bottom; a failing cell fails the suite.

The notebooks are committed without outputs and written by ``tutorials/build.py``;
this also checks that they are what that script writes (never stale).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
BUDGET_S = 180  # the bound: under 3 minutes on 2 CPU cores


def _build_module():
    spec = importlib.util.spec_from_file_location("tutorials_build", TUTORIALS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_are_what_build_py_writes():
    build = _build_module()
    assert sorted(build.NOTEBOOKS) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        committed = nbformat.read(path, as_version=4)
        sources = [(c.cell_type, c.source) for c in committed.cells]
        expected = [(c.cell_type, c.source) for c in build.NOTEBOOKS[path.name]]
        assert sources == expected, f"{path.name} is stale: run python tutorials/build.py"
        assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    # The 'python3' kernel of the running environment: jupyter_client launches it
    # with this interpreter, so the notebook sees the same installed packages.
    client = NotebookClient(notebook, kernel_name="python3", timeout=BUDGET_S,
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, if one fails
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.0f} s")
