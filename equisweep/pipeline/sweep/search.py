"""Optuna inside every grid cell, as one Tune searcher.

Tune's ``OptunaSearch`` cannot take a grid, and one ``Tuner`` per cell would run the cells one after another.
``PerCellSearch`` keeps one ``OptunaSearch`` per cell (a packed trial's cell: one sample serves every seed it
packs) and hands out trials round-robin over the cells that still have samples left, so all cells progress
together and fill the cluster; each result goes back to its own cell's study, so a cell's search only learns from
its own trials.

TPE samples at random until a cell has ``startup`` trials (``startup_trials``): Optuna's default of 10 would leave
a cell of 8 samples random search. A trial ASHA stopped early (it ended without its test metrics) reaches its study
as pruned, with its epochs' validation accuracies, not as a complete trial.
"""

from __future__ import annotations

import logging
from typing import Any

from optuna.samplers import TPESampler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep import results as r
from equisweep.pipeline.sweep.sections import SearchSpec
from equisweep.pipeline.sweep.state import PicklesItsState

log = logging.getLogger(__name__)
OPTUNA_STARTUP = 10  # TPESampler's own n_startup_trials


def startup_trials(search: SearchSpec) -> int:
    """Random samples per cell before TPE models the space: ``startup``, else half the samples, at most Optuna's."""
    return search.startup or max(1, min(OPTUNA_STARTUP, search.num_samples // 2))


class PerCellSearch(PicklesItsState, Searcher):
    """Suggests ``{**cell, "search": sampled values}`` for each trial config ``cell`` in ``cells`` (the driver's
    ``{"pack": ...}``); ``num_samples`` per cell, then FINISHED."""

    def __init__(self, cells: list[dict[str, Any]], search: SearchSpec) -> None:
        super().__init__(metric=search.metric, mode="max")
        self.cells = cells
        self.num_samples = search.num_samples
        space = {key: dist.to_tune() for key, dist in search.space.items()}
        startup = startup_trials(search)
        if startup >= search.num_samples:
            log.warning("search.startup: %d random samples of a cell's %d leave TPE none to choose, so the search is "
                        "random; set startup below num_samples", startup, search.num_samples)
        self.studies = [OptunaSearch(space=space, metric=search.metric, mode="max",
                                     points_to_evaluate=[dict(point) for point in search.start] or None,
                                     sampler=TPESampler(seed=search.seed + index, n_startup_trials=startup))
                        for index in range(len(cells))]
        self.issued = [0] * len(cells)
        self.owner: dict[str, int] = {}  # trial id -> cell index

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return True  # metric and mode come from the spec; the space is ours

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_cells = [index for index, count in enumerate(self.issued) if count < self.num_samples]
        if not open_cells:
            return Searcher.FINISHED
        index = min(open_cells, key=lambda i: (self.issued[i], i))
        sampled = self.studies[index].suggest(trial_id)
        if sampled is None:
            return None
        self.issued[index] += 1
        self.owner[trial_id] = index
        return {**self.cells[index], "search": sampled}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner:
            self.studies[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.owner:
            tested = result is not None and (m.TEST_ACC_UPRIGHT in result or r.COPIES in result)
            # OptunaSearch tells a trial without a result as pruned: a stopped trial's last epoch is no final score
            self.studies[self.owner[trial_id]].on_trial_complete(trial_id, result if tested else None, error)
