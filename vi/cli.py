"""The ``nfvi`` command: fit a flow to a target and write an HTML report.

::

    nfvi demo [--out DIR]                       fit pot1 with planar*16, write a report
    nfvi fit TARGET [--flow F] [--steps N] [--n-mc K] [--dim D] [--out DIR]
                                                (--flow default: auto)
    nfvi flows                                  list the registered flow steps

TARGET is a built-in target (``nfvi fit --help`` lists them) or ``module:function``
naming a NumPyro model that takes no arguments, or a log density of one vector
point (then ``--dim`` gives its dimension). Bad arguments give a usage message and
exit status 2, never a traceback. Compiled programs are kept in a persistent cache
(:func:`vi.enable_compilation_cache`, under ``~/.cache/nfvi``), so a second run
compiles nothing; ``NFVI_NO_CACHE=1`` turns that off.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flows
from guides.recipe import is_auto
from vi import targets
from vi.cache import enable_compilation_cache

DEMO_TARGET = "pot1"
DEMO_FLOW = "planar*16"
# 4 restarts side by side x 30,000 steps x 25 particles, seeds 0-11: KL 0.012-0.033 and
# PSIS k-hat 0.20-0.62 (usable), in 8 s on two CPU cores. With 15,000 steps k-hat
# ranged 0.16-1.0 over seeds 0-9 (seed 0 at 0.72 on one build, 0.26 on another): a
# first command whose grade hangs on rounding. PyMC3's planar*8 needed 25,000 x 100
# for KL ~ 0.135; our planar*8 reaches 0.077 / 0.078 / 0.089 in 5.6 s, but its k-hat
# (0.72 at seed 0) grades it not usable.
DEMO_STEPS = 30_000
DEMO_N_MC = 25
DEMO_RESTARTS = 4
FIT_STEPS = 15_000
DEFAULT_OUT = "nfvi-report"


class UsageError(ValueError):
    """A bad command-line argument; printed with the usage line, exit status 2."""


@dataclass
class Problem:
    """What to fit: a model, its name, the target's log density and log Z (if known)."""

    name: str
    model: Any
    log_density: Callable[[Any], Any] | None
    log_Z: float | None
    energy: bool = False


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _add_fit_options(parser: argparse.ArgumentParser, *, flow: str, steps: int,
                     n_mc: int, restarts: int = 1) -> None:
    parser.add_argument("--flow", default=flow,
                        help=f"flow formula, e.g. 'planar*10' or 'affine-loc', or 'auto' (chosen "
                             f"by the latent dimension) (default {flow!r}; `nfvi flows` "
                             "lists the steps)")
    parser.add_argument("--steps", type=_positive_int, default=steps,
                        help=f"optimisation steps (default {steps:,})")
    parser.add_argument("--n-mc", type=_positive_int, default=n_mc,
                        help=f"Monte-Carlo particles per step (default {n_mc})")
    parser.add_argument("--restarts", type=_positive_int, default=restarts,
                        help=f"initialisations fitted side by side, the best kept "
                             f"(default {restarts})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--jitter", type=_positive_float, default=flows.DEFAULT_JITTER,
                        help=f"s.d. of the initial flow parameters "
                             f"(default {flows.DEFAULT_JITTER})")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"folder for report.html and approximation.npz "
                             f"(default {DEFAULT_OUT!r})")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``nfvi`` argument parser with its three subcommands."""
    parser = argparse.ArgumentParser(
        prog="nfvi", description="Normalizing-flow variational inference from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help=f"fit {DEMO_TARGET} with {DEMO_FLOW} and write an HTML report",
        description=f"Fit the 2-D energy {DEMO_TARGET} (a ring cut in two arcs) with the flow "
                    f"{DEMO_FLOW!r}, print a summary and write an HTML report.")
    _add_fit_options(demo, flow=DEMO_FLOW, steps=DEMO_STEPS, n_mc=DEMO_N_MC,
                     restarts=DEMO_RESTARTS)
    demo.set_defaults(parser=demo)

    fit = commands.add_parser(
        "fit", help="fit a flow to a built-in target or your own model",
        description="Fit a flow to TARGET, print a summary and write an HTML report.")
    fit.add_argument("target", metavar="TARGET",
                     help=f"a built-in target ({', '.join(targets.names())}) or "
                          "module:function, a NumPyro model taking no arguments or a log "
                          "density of one point x of shape (dim,) (give --dim)")
    _add_fit_options(fit, flow="auto", steps=FIT_STEPS, n_mc=10)
    fit.add_argument("--dim", type=_positive_int,
                     help="dimension of a log-density TARGET (or of the funnel)")
    fit.set_defaults(parser=fit)

    listing = commands.add_parser("flows", help="list the registered flow steps",
                                  description="List the flow steps a formula can use.")
    listing.set_defaults(parser=listing)
    return parser


def _import_function(spec: str) -> Callable[..., Any]:
    """The callable named by ``module:function`` (the working directory is importable)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"{spec!r}: a custom target is written module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"cannot import module {module_name!r} for target {spec!r}: {err}"
                         ) from None
    fn: Any = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            public = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(part, public, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}{hint}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise UsageError(f"{spec!r} is a {type(fn).__name__}, not a function")
    return fn


def _is_numpyro_model(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn()`` under a trace records a latent ``numpyro.sample`` site."""
    from numpyro import handlers

    try:
        required = [p for p in inspect.signature(fn).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                           p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        required = []
    if required:
        return False
    trace = handlers.trace(handlers.seed(fn, 0)).get_trace()
    return any(site["type"] == "sample" and not site["is_observed"] for site in trace.values())


def resolve_target(spec: str, dim: int | None) -> Problem:
    """A built-in target by name, or ``module:function`` (NumPyro model or log density)."""
    from vi.model import Model

    if ":" not in spec:
        kwargs = {"dim": dim} if dim is not None and spec.strip().lower() == "funnel" else {}
        try:
            target = targets.get(spec, **kwargs)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if dim is not None and not kwargs and dim != target.dim:
            raise UsageError(f"target {target.name!r} is {target.dim}-dimensional; "
                             f"--dim {dim} does not apply")
        return Problem(target.name, Model.from_logdensity(target.log_density, target.dim,
                                                          name="x"),
                       target.log_density, target.log_Z,
                       energy=target.name.startswith("pot"))
    fn = _import_function(spec)
    if dim is not None:
        return Problem(spec, Model.from_logdensity(fn, dim), fn, None)
    try:
        numpyro_model = _is_numpyro_model(fn)
    except Exception as err:  # the user's code failed: say where, as a usage problem
        raise UsageError(f"calling {spec}() as a NumPyro model failed "
                         f"({type(err).__name__}: {err}); if it is a log density of a "
                         "vector, give its dimension with --dim") from None
    if not numpyro_model:
        raise UsageError(f"{spec} has no latent numpyro.sample site, so it is taken for a "
                         "log density: give its dimension with --dim")
    return Problem(spec, Model(fn), None, None)


def _build(problem: Problem, formula: str, args: argparse.Namespace) -> Any:
    """The NFVI object, with its guide built now so that a formula that does not fit
    the model's dimension is a usage error before any compilation."""
    from numpyro import handlers

    from vi.nfvi import NFVI

    try:
        if not is_auto(formula):
            flows.parse(formula)
    except flows.FormulaError as err:
        raise UsageError(f"bad --flow:\n{err}") from None
    nfvi = NFVI(formula, problem.model, jitter=args.jitter, seed=args.seed)
    try:
        handlers.seed(nfvi.guide, 0)(*problem.model.args, **problem.model.kwargs)
    except ValueError as err:
        raise UsageError(f"--flow {formula!r} does not apply to {problem.name}: {err}") from None
    return nfvi


def run_fit(problem: Problem, args: argparse.Namespace) -> int:
    """Fit, print the summary, write ``report.html`` and ``approximation.npz``."""
    from vi import report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    report.plots.backend.require_holoviews()  # the report needs the plots extra: say so now
    nfvi = _build(problem, args.flow, args)
    start = time.perf_counter()
    approx = nfvi.fit(args.steps, n_mc=args.n_mc, restarts=args.restarts,
                      progress=args.progress)
    wall = time.perf_counter() - start
    summary = report.summarize(approx, target=problem.name, formula=approx.formula,
                               n_mc=args.n_mc, wall_s=wall, log_Z=problem.log_Z,
                               restarts=args.restarts)
    width = max(len(label) for label, _ in summary.rows())
    for label, value in summary.rows():
        print(f"{label:<{width}}  {value}")
    saved = approx.save(out / "approximation.npz")
    page = report.write_report(out / "report.html",
                               summary, report.figures(approx, problem.log_density,
                                                       energy=problem.energy))
    print(f"{'report':<{width}}  {page}")
    print(f"{'approximation':<{width}}  {saved}  (vi.load to reuse)")
    return 0


def list_flows() -> int:
    """Print one line per registered flow step: name, aliases, summary."""
    rows = []
    for name in flows.available():
        cls = flows.lookup(name)
        aliases = f"(also {', '.join(cls.aliases)})" if cls.aliases else ""
        rows.append((name, aliases, cls.summary or cls.__doc__.strip().splitlines()[0]))
    name_w = max(len(r[0]) for r in rows)
    alias_w = max(len(r[1]) for r in rows)
    for name, aliases, summary in rows:
        print(f"{name:<{name_w}}  {aliases:<{alias_w}}  {summary}".rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nfvi`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "flows" and not os.environ.get("NFVI_NO_CACHE"):
        # a second run of the same command compiles nothing (NFVI_NO_CACHE=1: off)
        enable_compilation_cache()
    try:
        if args.command == "flows":
            return list_flows()
        if args.command == "demo":
            return run_fit(resolve_target(DEMO_TARGET, None), args)
        return run_fit(resolve_target(args.target, args.dim), args)
    except UsageError as err:
        args.parser.error(str(err))  # usage line of the subcommand, exit status 2
    except ImportError as err:  # the plots extra is missing
        print(f"nfvi: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
