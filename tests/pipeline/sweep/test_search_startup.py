"""Optuna inside each cell: TPE models the space after a share of the cell's budget, not after Optuna's 10 samples,
and a trial ASHA stops early reaches its study as pruned. Real Optuna, and real Ray Tune with the sweep's searcher
and scheduler."""

import logging

import optuna
import pytest
from ray import tune

from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep.scheduler import PerCellASHA
from equisweep.pipeline.sweep.search import PerCellSearch
from equisweep.pipeline.sweep.sections import SearchSpec

CELL = {"pack": {"cell": {"group": "z2"}, "seeds": [0]}}


def _suggested(search: SearchSpec) -> list[float]:
    """The lr values one cell's search suggests, each trial told its score before the next is asked."""
    searcher = PerCellSearch([CELL], search)
    values = []
    for index in range(search.num_samples):
        lr = searcher.suggest(f"trial{index}")["search"]["lr"]
        searcher.on_trial_complete(f"trial{index}", {m.VAL_ACC: 1 - abs(lr - 0.8), m.TEST_ACC_UPRIGHT: 0.5})
        values.append(lr)
    return values


def test_tpe_takes_over_after_half_the_samples_and_a_random_only_search_warns(caplog):
    space = {"lr": {"uniform": [0.0, 1.0]}}
    modelled = _suggested(SearchSpec(num_samples=8, space=space))
    with caplog.at_level(logging.WARNING, logger="equisweep"):
        random_only = _suggested(SearchSpec(num_samples=8, space=space, startup=8))
    # The same seed draws the same random start; from the fifth sample on, TPE chooses.
    assert modelled[:4] == random_only[:4]
    assert all(a != b for a, b in zip(modelled[4:], random_only[4:]))
    assert [record.getMessage() for record in caplog.records if record.name.startswith("equisweep")] == [
        "search.startup: 8 random samples of a cell's 8 leave TPE none to choose, so the search is random; set "
        "startup below num_samples"]


def _trainable(config: dict) -> None:
    """Three epochs of the sweep's reports: val_acc is the sampled lr; the last report is the tested result."""
    for epoch in (1, 2):
        tune.report({m.VAL_ACC: config["search"]["lr"], m.EPOCH: epoch})
    tune.report({m.VAL_ACC: config["search"]["lr"], m.EPOCH: 3, m.TEST_ACC_UPRIGHT: config["search"]["lr"]})


@pytest.mark.slow
def test_a_trial_asha_stops_is_pruned_in_its_cells_study(tmp_path, ray_local):
    # One cell, two samples in turn: a good start point, then a hopeless one, which ASHA stops at epoch 1.
    searcher = PerCellSearch([CELL], SearchSpec(num_samples=2, space={"lr": {"choice": [0.9, 0.1]}},
                                                start=[{"lr": 0.9}, {"lr": 0.1}]))
    scheduler = PerCellASHA(time_attr=m.EPOCH, max_t=3, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(_trainable, tune_config=tune.TuneConfig(
        metric=m.VAL_ACC, mode="max", search_alg=searcher, scheduler=scheduler, num_samples=2,
        max_concurrent_trials=1), run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    grid = tuner.fit()

    assert sorted(result.metrics[m.EPOCH] for result in grid) == [1, 3]
    trials = searcher.studies[0]._ot_study.get_trials()  # Ray keeps the Optuna study it drives here
    assert [(trial.params["lr"], trial.state) for trial in trials] == [
        (0.9, optuna.trial.TrialState.COMPLETE), (0.1, optuna.trial.TrialState.PRUNED)]
    assert trials[0].value == 0.9 and trials[1].value is None
