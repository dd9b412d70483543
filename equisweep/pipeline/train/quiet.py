"""Two library notices that say nothing about the user's run, silenced where they arise and nowhere else.

- Lightning logs a tip to install ``litlogger`` through its rank-zero logger whenever a Trainer is built.
- ``WandbLogger`` always hands ``anonymous=None`` to ``wandb.init``, and W&B warns that this setting has no effect.
"""

from __future__ import annotations

import logging

from pytorch_lightning.loggers import WandbLogger

# The logger behind Lightning's rank_zero_info (pytorch_lightning.utilities.rank_zero names it so).
_LIGHTNING_RANK_ZERO = logging.getLogger("pytorch_lightning.utilities.rank_zero")


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def silence_litlogger_tip() -> None:
    """Drop Lightning's litlogger tip, and only that message (idempotent)."""
    if not any(isinstance(f, _DropLitLoggerTip) for f in _LIGHTNING_RANK_ZERO.filters):
        _LIGHTNING_RANK_ZERO.addFilter(_DropLitLoggerTip())


def without_anonymous(logger: WandbLogger | None) -> WandbLogger | None:
    """``logger`` with the ``anonymous`` argument left out of its ``wandb.init`` call (it has no effect there)."""
    if logger is not None:
        logger._wandb_init.pop("anonymous", None)
    return logger
