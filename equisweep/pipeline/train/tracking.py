"""Weights & Biases for one run: which mode it logs in (the user's explicit choice first), its logger (id, name, arm
tags, config), its final results (an angle table and flat summary keys), and how it ends.

A run's summary holds its scalar results plus flat ``test_acc_by_angle/<angle>``, ``eq_error/<layer>`` and (relaxed
runs) ``relaxation/<layer>`` keys, so the report can rebuild a sweep's tables from its runs
(``equisweep.pipeline.report.wandb_runs``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.vocabulary import ANGLE_PREFIX, arm_label

if TYPE_CHECKING:  # the report reads modes and summaries from here without importing Lightning or torch
    from pytorch_lightning.loggers import WandbLogger

    from equisweep.pipeline.train.config import RunConfig

# What WANDB_MODE may say, as wandb reads it: its two old spellings mean offline and online.
_ENV_MODES = {"online": "online", "offline": "offline", "disabled": "disabled", "shared": "shared",
              "dryrun": "offline", "run": "online"}


def resolve_mode(mode: str) -> str:
    """The mode a run logs in; see ``explain_mode``."""
    return explain_mode(mode)[0]


def explain_mode(mode: str) -> tuple[str, str]:
    """The mode a run logs in and why. A mode other than ``auto`` stands as given. ``auto`` obeys an explicit
    ``WANDB_MODE``, then goes online with an API key (``WANDB_API_KEY``, or the one ``wandb login`` stored), and is
    offline otherwise: it never turns a user's offline or disabled into online."""
    if mode != "auto":
        return mode, "wandb.mode"
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode:
        if env_mode not in _ENV_MODES:
            raise UserError(f"WANDB_MODE: {env_mode!r} is not online, offline or disabled; fix it or unset it")
        return _ENV_MODES[env_mode], f"WANDB_MODE={env_mode}"
    if os.environ.get("WANDB_API_KEY"):
        return "online", "WANDB_API_KEY set"
    if _login_key_stored():
        return "online", "key from wandb login"
    return "offline", "no WANDB_API_KEY, no wandb login"


def _login_key_stored() -> bool:
    """Whether ``wandb login`` stored a key for the W&B host (its netrc entry), read as wandb reads it, without
    contacting the server (``wandb.login`` would ask the server who the key belongs to)."""
    from wandb.errors import AuthenticationError
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib.wbauth import read_netrc_auth

    host = wandb_setup.singleton().settings.base_url
    try:
        return read_netrc_auth(host=host) is not None
    except (AuthenticationError, ValueError) as err:
        raise UserError(f"wandb: the key `wandb login` stored for {host} cannot be used ({err}); run "
                        "`wandb login --relogin`, or set WANDB_MODE=offline") from None


def flat_summary(results: dict[str, Any]) -> dict[str, Any]:
    """A run's results as W&B summary keys: scalars as they are, per-angle and per-layer dicts flattened."""
    summary = {key: value for key, value in results.items() if not isinstance(value, dict)}
    summary.update({f"{ANGLE_PREFIX}{float(a)}": acc for a, acc in results[m.TEST_ACC_BY_ANGLE].items()})
    for key, prefix in m.PER_KEY_RESULTS.items():
        summary.update({f"{prefix}{entry}": v for entry, v in results.get(key, {}).items()})
    return summary


def wandb_run_id(config: RunConfig, out_dir: Path) -> str:
    """A stable W&B id for this run: a hash of its group (the sweep) and name (the trial), or of its directory when
    it has no group, so a retried or resumed trial continues its run instead of starting another."""
    identity = f"{config.wandb.group}/{config.run_name or out_dir.name}" if config.wandb.group else str(out_dir)
    return hashlib.sha256(f"{config.wandb.project}/{identity}".encode()).hexdigest()[:16]


def wandb_logger(config: RunConfig, out_dir: Path, exact: bool | None, alongside: bool = False
                 ) -> WandbLogger | None:
    """The run's W&B logger, or None when W&B is disabled. ``alongside``: other runs stay open in this process (the
    copies of a pack), else starting it finishes the previous run."""
    mode = config.wandb.resolved_mode()
    if mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    from equisweep.pipeline.train.quiet import without_anonymous

    net, size = config.model, config.data.input_size
    wrapper = net.invariance["method"]
    # the label's exact/approx word is the backbone's; ``exact`` judges the wrapped net, so a wrapped arm goes without
    arm = arm_label(net.group, size, exact if wrapper == m.NO_INVARIANCE else None, net.relaxation["method"],
                    net.subsampling, wrapper, config.optim.eq_penalty, config.optim.eq_penalty_kind)
    kind = "plain" if exact is None else "exact" if exact else "approx"
    tags = list(dict.fromkeys([*config.wandb.tags, arm, net.group, f"size-{size}", kind]))
    # A user's WANDB_DIR is where runs go; otherwise next to the run's output.
    save_dir = os.environ.get("WANDB_DIR") or str(out_dir)
    # The mode goes to wandb.init for this run only; WandbLogger(offline=True) would set WANDB_MODE process-wide.
    return without_anonymous(WandbLogger(
        project=config.wandb.project, entity=config.wandb.entity, group=config.wandb.group,
        name=config.run_name or out_dir.name, id=wandb_run_id(config, out_dir), resume="allow", job_type=arm,
        tags=tags, save_dir=save_dir, mode=mode, config=config.flat(mode="json"),
        reinit="create_new" if alongside else "finish_previous"))


def finish_with_results(logger: WandbLogger | None, results: dict[str, Any]) -> None:
    """The angle sweep as a table and a plot, every metric in the run's summary, and the run finished."""
    if logger is None:
        return
    import wandb

    by_angle = results[m.TEST_ACC_BY_ANGLE]
    table = wandb.Table(columns=["angle", "accuracy"], data=[[float(a), acc] for a, acc in by_angle.items()])
    logger.experiment.log({"test_acc_by_angle_table": table,
                           "test_acc_by_angle_plot": wandb.plot.line(table, "angle", "accuracy",
                                                                     title="test accuracy by rotation angle")})
    logger.experiment.summary.update(flat_summary(results))
    logger.experiment.finish()


@contextmanager
def failures_end_runs(loggers: Sequence[WandbLogger | None], failed: Collection[int] = ()) -> Iterator[None]:
    """Leaving the block, the runs of ``loggers`` it did not finish end failed (exit code 1), as their rows do: all
    of them when it raised, else those whose index is in ``failed`` (read on leaving: a pack's diverged copies)."""
    try:
        yield
        ended = [loggers[k] for k in failed]
    except BaseException:
        ended = list(loggers)
        raise
    finally:
        for logger in ended:
            if logger is not None:  # finishing a finished run does nothing
                logger.experiment.finish(exit_code=1)
