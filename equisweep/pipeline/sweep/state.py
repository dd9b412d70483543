"""Saving a per-cell Tune searcher or scheduler with the experiment, so a resumed sweep continues each cell."""

from __future__ import annotations

import pickle


class PicklesItsState:
    """``save``/``restore`` as Tune's searchers and schedulers define them: the object's whole ``__dict__`` (its
    per-cell Optuna studies or ASHA schedulers with them)."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as stream:
            pickle.dump(self.__dict__, stream)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as stream:
            self.__dict__.update(pickle.load(stream))
