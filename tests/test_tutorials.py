"""The tutorials: each notebook is its jupytext script plus outputs, and still runs.

``tutorials/NN_name.py`` (jupytext's percent format) holds the prose and code;
``tutorials/NN_name.ipynb`` is committed with the same cells executed, written by
``python tutorials/sync.py``. Here: every pair is in sync, every committed notebook
was executed top to bottom and none of its outputs is an error, and (slow) every
notebook executes within its budget, a failing cell failing the test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
SCRIPTS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
BUDGET_S = 180  # per notebook, on 2 CPU cores
MAX_BYTES = 1_000_000  # a code host renders them; keep them small

# What a failure looks like in a notebook's outputs: an error output (a failing cell,
# or a display formatter that raised), or a plot that holoviews replaced by its own
# exception display instead of drawing it.
FAILURE_MARKS = ("Traceback (most recent call last)", "hv-jupyter-exc")

# Notebooks whose time goes into running long compiled programs (NUTS chains, flow
# re-fits), not into compiling them: their kernels compile with LLVM's optimisations,
# which conftest.py turns off for the rest of the suite (06: 69 s against 121 s).
RUN_BOUND = {"06_flow_adapted_nuts"}
O0_FLAG = "--xla_backend_optimization_level=0"


def _cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def _failures(notebook: nbformat.NotebookNode) -> list[str]:
    """The outputs of ``notebook`` that show a failure, as short descriptions."""
    found = []
    for i, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"cell {i}: {output.ename}: {output.evalue}")
                continue
            texts = [output.get("text", "")] + [
                value for value in output.get("data", {}).values() if isinstance(value, str)]
            if any(mark in text for text in texts for mark in FAILURE_MARKS):
                found.append(f"cell {i}: {' '.join(texts)[:300]}")
    return found


def test_every_script_has_its_notebook_and_back():
    assert [p.stem for p in SCRIPTS] == [p.stem for p in NOTEBOOKS]
    assert len(NOTEBOOKS) >= 7
    assert RUN_BOUND <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_notebook_is_its_script_with_outputs(script):
    jupytext = pytest.importorskip("jupytext", reason='jupytext comes with the "docs" extra')
    committed = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    fix = f"run: python tutorials/sync.py {script.name}"
    assert _cells(committed) == _cells(jupytext.read(script)), f"out of sync; {fix}"
    assert committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    # executed top to bottom in one run (a cell that only defines shows nothing)
    counts = [cell.get("execution_count") for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"not executed in order; {fix}"
    assert any(cell.get("outputs") for cell in code), f"no outputs; {fix}"
    assert _failures(committed) == [], fix
    assert script.with_suffix(".ipynb").stat().st_size < MAX_BYTES


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    # The 'python3' kernel of the running environment: jupyter_client launches it
    # with this interpreter, so the notebook sees the same installed packages.
    client = NotebookClient(notebook, kernel_name="python3", timeout=BUDGET_S,
                            resources={"metadata": {"path": str(tmp_path)}})
    env = dict(os.environ)
    if path.stem in RUN_BOUND:
        env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if f != O0_FLAG)
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError, naming the cell, if one fails
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.0f} s")
    assert _failures(notebook) == []
    assert elapsed < BUDGET_S, f"{path.name} took {elapsed:.0f} s (budget {BUDGET_S} s)"
