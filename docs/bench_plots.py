"""Plots of the benchmark tables of ``docs/benchmarks.md``, drawn when the site is built.

Each table there follows a MyST comment line ``% table: NAME``; this reads the
numbers from the page itself, so a plot can never disagree with its table, and
writes ``NAME.png`` under ``docs/_generated/bench/`` (not committed).

    python docs/bench_plots.py     # what docs/conf.py does on every build
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PAGE = Path(__file__).resolve().parent / "benchmarks.md"
SIZE = (6.4, 3.6)
DPI = 80
OURS, THEIRS, OTHER = "#08519c", "#fd8d3c", "#bdbdbd"


def tables(page: Path = PAGE) -> dict[str, list[dict[str, str]]]:
    """``{name: rows}`` for every ``% table: name`` of ``page``; a row maps header -> cell."""
    found: dict[str, list[dict[str, str]]] = {}
    lines = page.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.fullmatch(r"%\s*table:\s*(\w+)\s*", line)
        if not match:
            continue
        body = []
        for row in lines[i + 1:]:
            if not row.startswith("|"):
                break
            body.append([cell.strip() for cell in row.strip().strip("|").split("|")])
        header, rows = body[0], body[2:]  # body[1] is the |---| line
        found[match.group(1)] = [dict(zip(header, row, strict=True)) for row in rows]
    return found


def number(cell: str) -> float | None:
    """The first number in a cell ("**0.109 (0.49)**" -> 0.109), None for "-" or words."""
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", cell.replace("~", ""))
    return float(match.group().replace(",", "")) if match else None


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def zoo(rows: list[dict[str, str]], path: Path) -> None:
    guides = [h for h in rows[0] if h not in ("model", "d", "ours (auto)")]
    models = [r["model"] for r in rows]
    ours = [number(r["ours (auto)"]) for r in rows]
    best = [min((v for g in guides if (v := number(r[g])) is not None), default=None)
            for r in rows]
    fig, ax = plt.subplots(figsize=(SIZE[0], 4.4))
    y = range(len(models))
    ax.barh([i - 0.2 for i in y], ours, 0.4, color=OURS, label="ours (auto)")
    ax.barh([i + 0.2 for i in y], [b or 0 for b in best], 0.4, color=THEIRS,
            label="best NumPyro autoguide")
    ax.set_yticks(list(y), models)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("error against the reference (lower is better)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    _save(fig, path)


def throughput(rows: list[dict[str, str]], path: Path) -> None:
    rows = [r for r in rows if r["row"].endswith("steps/s")]
    systems = ["ours", "numpyro SVI.run (AutoIAFNormal)", "bare lax.scan loop"]
    colours = [OURS, THEIRS, OTHER]
    fig, ax = plt.subplots(figsize=SIZE)
    for j, (system, colour) in enumerate(zip(systems, colours, strict=True)):
        ax.bar([i + 0.27 * (j - 1) for i in range(len(rows))],
               [number(r[system]) for r in rows], 0.27, color=colour, label=system)
    ax.set_xticks(range(len(rows)),
                  [textwrap.fill(r["row"].removesuffix(", steps/s"), 34) for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("steps per second (higher is better)")
    ax.legend(fontsize="small")
    _save(fig, path)


def kl_flows(rows: list[dict[str, str]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=SIZE)
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [number(r["ours"]) for r in rows], 0.4, color=OURS,
           label="ours")
    ax.bar([i + 0.2 for i in x], [number(r["best NumPyro"]) for r in rows], 0.4,
           color=THEIRS, label="best NumPyro (IAF or BNAF)")
    ax.set_xticks(list(x), [r["target"] for r in rows])
    ax.set_ylabel("KL(q || p) (lower is better)")
    ax.legend()
    _save(fig, path)


def funnel(rows: list[dict[str, str]], path: Path) -> None:
    names = [r["system"].replace("`", "") for r in rows]
    values = [number(r["per 1000 grads"]) for r in rows]
    colours = [OURS if name.startswith("vi.") else THEIRS for name in names]
    fig, ax = plt.subplots(figsize=SIZE)
    ax.barh(range(len(rows)), values, color=colours)
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("min ESS per 1000 gradients (higher is better)")
    _save(fig, path)


def scale(rows: list[dict[str, str]], path: Path) -> None:
    n = [number(r["N"]) for r in rows]
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot(n, [number(r["ours ms/step"]) for r in rows], "o-", color=OURS, label="ours")
    ax.plot(n, [number(r["NumPyro ms/step"]) for r in rows], "s-", color=THEIRS,
            label="NumPyro SVI.run")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows N (minibatch B = 1,024)")
    ax.set_ylabel("ms per step (lower is better)")
    ax.legend()
    _save(fig, path)


PLOTS = {"zoo": zoo, "throughput": throughput, "kl_flows": kl_flows, "funnel": funnel,
         "scale": scale}


def main(out: Path = PAGE.parent / "_generated") -> list[Path]:
    """Draw every plot into ``out/bench/``; returns the files written."""
    found = tables()
    missing = sorted(set(PLOTS) - set(found))
    if missing:
        raise ValueError(f"{PAGE.name} lacks the table(s) {missing} ('% table: NAME')")
    folder = out / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in PLOTS.items():
        path = folder / f"{name}.png"
        draw(found[name], path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in main():
        print(path)
