"""Write each tutorial notebook from its jupytext script, then execute it in place.

    python tutorials/sync.py                       # every NN_*.py here
    python tutorials/sync.py 05_eight_schools.py   # one (or a few) of them
    python tutorials/sync.py --no-execute          # cells only, without outputs

The script ``NN_name.py`` (jupytext's percent format) is what a reviewer reads and
edits; ``NN_name.ipynb`` is the same cells with their outputs, committed so that a
code host and the documentation site show plots and numbers without running
anything. It is ``jupytext --to ipynb`` followed by an nbclient execution with the
``python3`` kernel of the running environment, in a scratch folder (nothing is left
behind); cell ids are stable (notebook prefix and index) and no timing metadata is
recorded, so re-running an unchanged notebook changes only what its outputs change.
``tests/test_tutorials.py`` checks that each pair is in sync and that every notebook
still runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 600  # per cell; the test suite's per-notebook budget is tighter


def scripts() -> list[Path]:
    """The tutorial scripts, ``NN_name.py``, in order."""
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def notebook_from(script: Path) -> nbformat.NotebookNode:
    """The notebook of ``script``'s cells, without outputs, with stable cell ids."""
    notebook = jupytext.read(script)
    for i, cell in enumerate(notebook.cells):
        cell["id"] = f"{script.stem[:2]}-{i:02d}"
    notebook.metadata.setdefault("kernelspec", {
        "name": "python3", "display_name": "Python 3", "language": "python"})
    return notebook


def execute(notebook: nbformat.NotebookNode) -> float:
    """Run every cell (raising ``CellExecutionError`` on the first that fails); seconds."""
    with tempfile.TemporaryDirectory() as scratch:
        client = NotebookClient(notebook, kernel_name="python3", timeout=TIMEOUT_S,
                                record_timing=False,
                                resources={"metadata": {"path": scratch}})
        start = time.perf_counter()
        client.execute()
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", help="NN_name.py files (default: all)")
    parser.add_argument("--no-execute", action="store_true",
                        help="write the cells without running them")
    args = parser.parse_args(argv)
    chosen = [HERE / Path(s).name for s in args.scripts] or scripts()
    for script in chosen:
        if not script.is_file():
            parser.error(f"{script} does not exist")
        notebook = notebook_from(script)
        seconds = 0.0 if args.no_execute else execute(notebook)
        path = script.with_suffix(".ipynb")
        nbformat.write(notebook, path)
        print(f"{path.name}: {seconds:.0f} s, {path.stat().st_size / 1024:.0f} KiB",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
