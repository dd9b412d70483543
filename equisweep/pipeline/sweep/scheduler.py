"""ASHA inside every search cell, as one Tune scheduler.

One ``ASHAScheduler`` over a whole sweep compares every trial with every other: it would stop the weaker arm's
trials (another group, input size, training regime or seed) early, untested, and so drop them from the verdict.
``PerCellASHA`` keeps one ``ASHAScheduler`` per cell (keyed by the trial config's ``"pack"``: the cell's settings
and the seeds it trains, as ``PerCellSearch`` keeps one Optuna study per pack), so early stopping only ranks
Optuna's samples of one cell's setting against each other, and a cell of one trial (a sweep without ``search:``) is
never stopped early. A packed trial is judged by what it reports, the mean validation accuracy of its live copies.
"""

from __future__ import annotations

import functools
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from equisweep.pipeline.sweep.results import cell_key
from equisweep.pipeline.sweep.state import PicklesItsState


class PerCellASHA(PicklesItsState, FIFOScheduler):
    """Routes every trial hook to its cell's ``ASHAScheduler``; trials start in submission order (FIFO), as with
    ASHA alone."""

    def __init__(self, time_attr: str, max_t: int, grace_period: int, reduction_factor: float) -> None:
        super().__init__()
        self._new_asha = functools.partial(ASHAScheduler, time_attr=time_attr, max_t=max_t,
                                           grace_period=grace_period, reduction_factor=reduction_factor)
        self._mode: str | None = None
        self.cells: dict[str, ASHAScheduler] = {}  # cell key -> that cell's scheduler

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def _asha(self, trial: Trial) -> ASHAScheduler:
        key = cell_key(trial.config.get("pack", {}))
        if key not in self.cells:
            self.cells[key] = self._new_asha(metric=self._metric, mode=self._mode)
        return self.cells[key]

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._asha(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict[str, Any]) -> str:
        return self._asha(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict[str, Any]) -> None:
        self._asha(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._asha(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"Using AsyncHyperBand within each cell ({len(self.cells)} cells)."
