"""The host side of a fit: runs compiled chunks until the call's steps are done, with
the progress bar, the Tracker's records, the callbacks, failure checks and Ctrl-C.

The host is touched once per chunk. The next chunk is dispatched before the host
handles the current one, so the device never waits for the bar or the callbacks;
if the current chunk ends the fit, that speculative chunk is dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vi.loop import LoopState
from vi.plan import FitPlan
from vi.program import Runner


class FitError(RuntimeError):
    """The fit could not go on (a long run of non-finite steps).

    ``approx`` holds the last finite parameters and the history so far.
    """

    def __init__(self, message: str, approx: Any | None):
        super().__init__(message)
        self.approx = approx


@dataclass
class Outcome:
    """What a driven fit call left: its last state, its losses chunk by chunk
    (each of shape (restarts, steps taken)), and why it stopped early, if it did."""

    state: LoopState
    losses: list[np.ndarray] = field(default_factory=list)
    stop_message: str | None = None
    failure: FitError | None = None


def nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean of the finite entries; NaN (without a warning) where there are none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def best_recent(losses: list[np.ndarray]) -> int:
    """The restart with the lowest mean loss over its last 200 finite steps."""
    means = nanmean(np.concatenate(losses, axis=1)[:, -200:], axis=1)
    return int(np.argmin(np.where(np.isnan(means), np.inf, means)))


def drive(run: Runner, state: LoopState, plan: FitPlan,
          approximation: Callable[[LoopState, int, list[np.ndarray]], Any],
          keep: Callable[[LoopState], None]) -> Outcome:
    """Run ``plan.n`` steps of ``run`` from ``state``.

    ``approximation(state, restart, losses)`` builds what callbacks receive;
    ``keep(state)`` is told every state reached, so that an interrupted fit keeps
    its progress. Returns the :class:`Outcome`; a callback's ``StopIteration``,
    Ctrl-C and a run of ``max_failures`` non-finite steps end the call early.
    """
    n, every, blocks = plan.n, plan.every, plan.blocks
    start = int(state.step[0])
    end = start + n
    outcome = Outcome(state)
    bar = tqdm(total=n, disable=not plan.progress, dynamic_ncols=True)
    try:
        done = 0
        pending = run(state, end, start)
        while done < n:
            state, losses, records, reached = pending
            pending = run(state, end, reached) if reached < end else None
            losses = np.asarray(losses)
            steps_done = reached - start
            taken = steps_done - done
            outcome.losses.append(losses[:, :taken])
            outcome.state = state
            keep(state)
            best = best_recent(outcome.losses) if plan.restarts > 1 else 0
            if plan.tracker is not None:
                record_steps = start + done + every * np.arange(1, blocks + 1)
                valid = record_steps <= start + steps_done
                plan.tracker.record(record_steps[valid],
                                    {k: np.asarray(v)[best][valid] for k, v in records.items()})
            done = steps_done
            bar.update(taken)
            bar.set_description(f"Average Loss = {nanmean(losses[best, :taken]):.4g}")
            run_bad = int(np.max(np.asarray(state.run_skipped)))
            if run_bad >= plan.max_failures:
                raise FitError(
                    f"{run_bad} consecutive steps had a non-finite loss or gradient; "
                    f"the fit stopped at step {start + done} keeping the last finite "
                    "parameters (lower the learning rate, or check the model's density "
                    "for overflow)", None)
            if plan.callbacks:
                approx = approximation(state, best, outcome.losses)
                for cb in plan.callbacks:
                    cb(approx, approx.hist, start + done)
    except StopIteration as stop:
        outcome.stop_message = str(stop)
    except KeyboardInterrupt:
        outcome.stop_message = "interrupted; returning what was fitted so far"
    except FitError as err:
        outcome.failure = err
    finally:
        bar.close()
    return outcome
