"""Weights & Biases for one run: which mode it logs in (the user's explicit choice first), and its results as flat
summary keys.

A run's summary holds its scalar results plus flat ``test_acc_by_angle/<angle>``, ``eq_error/<layer>`` and (relaxed
runs) ``relaxation/<layer>`` keys, so the report can rebuild a sweep's tables from its runs
(``equisweep.pipeline.report.wandb_runs``).
"""

from __future__ import annotations

import os
from typing import Any

from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.vocabulary import ANGLE_PREFIX, LAYER_ERROR_PREFIX, RELAXATION_PREFIX

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
    summary.update({f"{LAYER_ERROR_PREFIX}{layer}": v for layer, v in results[m.EQ_ERROR_BY_LAYER].items()})
    summary.update({f"{RELAXATION_PREFIX}{layer}": v for layer, v in results.get(m.RELAXATION_BY_LAYER, {}).items()})
    return summary


