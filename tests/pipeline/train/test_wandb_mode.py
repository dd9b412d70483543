"""Which W&B mode a run logs in: the user's explicit choice wins, ``auto`` goes online only with a key, and
``disabled`` writes nothing. Runs log through real wandb, offline; no test contacts a server."""

import pytest
from pytorch_lightning.callbacks import Callback

from equisweep.errors import UserError
from equisweep.pipeline import load_run_config, run_one
from equisweep.pipeline.train.tracking import explain_mode, wandb_run_id
from tests.helpers import read_wandb_run

KEY = "k" * 40  # the shape of a W&B API key; no server ever sees it
# A plain CNN (z2) on the 6s and 9s trains one epoch in seconds; the W&B side is what these tests look at.
TRIAL = {"dataset": "mnist69", "group": "z2", "width": 4, "epochs": 1, "batch_size": 128, "num_workers": 0,
         "bn_calibration_batches": 0, "angles": [0, 90], "eq_error_samples": 8, "run_name": "trial_1",
         "wandb": {"project": "equisweep-test", "group": "sweep-m"}}


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    """No W&B mode, key or netrc entry from the machine: each test says what it sets."""
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return monkeypatch


@pytest.mark.parametrize(("env", "expected"), [
    ({"WANDB_API_KEY": KEY, "WANDB_MODE": "offline"}, ("offline", "WANDB_MODE=offline")),
    ({"WANDB_API_KEY": KEY, "WANDB_MODE": "disabled"}, ("disabled", "WANDB_MODE=disabled")),
    ({"WANDB_API_KEY": KEY, "WANDB_MODE": "dryrun"}, ("offline", "WANDB_MODE=dryrun")),  # wandb's old name
    ({"WANDB_MODE": "online"}, ("online", "WANDB_MODE=online")),
    ({"WANDB_API_KEY": KEY}, ("online", "WANDB_API_KEY set")),
    ({}, ("offline", "no WANDB_API_KEY, no wandb login")),
])
def test_auto_obeys_wandb_mode_then_a_key_then_stays_offline(bare_env, env, expected):
    for name, value in env.items():
        bare_env.setenv(name, value)
    assert explain_mode("auto") == expected


def test_a_mode_the_config_sets_wins_over_the_environment(bare_env):
    bare_env.setenv("WANDB_MODE", "offline")
    assert explain_mode("online")[0] == "online" and explain_mode("disabled")[0] == "disabled"


def test_auto_goes_online_with_the_key_wandb_login_stored(bare_env, tmp_path):
    (tmp_path / "netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {KEY}\n")
    assert explain_mode("auto") == ("online", "key from wandb login")
    (tmp_path / "netrc").write_text(f"machine example.org\n  login user\n  password {KEY}\n")  # another host's
    assert explain_mode("auto")[0] == "offline"


def test_a_wandb_mode_wandb_does_not_know_is_one_line(bare_env):
    bare_env.setenv("WANDB_MODE", "loud")
    with pytest.raises(UserError, match=r"^WANDB_MODE: 'loud' is not online, offline or disabled; fix it or unset it$"):
        explain_mode("auto")


class _WorkerDies(Callback):
    """Ends an attempt at the start of its second epoch, as a lost worker ends a trial."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("worker died")


@pytest.mark.slow
def test_with_a_key_and_wandb_mode_offline_each_attempt_of_a_trial_logs_offline_under_one_id(bare_env, tmp_path):
    """Before, ``auto`` passed online to wandb.init over the user's WANDB_MODE: with no network a run waited on the
    server and failed. Offline, wandb cannot append to an earlier attempt's run: each attempt writes its own folder
    under the trial's one id, and ``wandb sync`` replays them in order of start time (see the README)."""
    bare_env.setenv("WANDB_API_KEY", KEY)
    bare_env.setenv("WANDB_MODE", "offline")
    bare_env.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    config, out = load_run_config({**TRIAL, "epochs": 2}), tmp_path / "trial"
    with pytest.raises(RuntimeError, match="worker died"):
        run_one(config, out, callbacks=[_WorkerDies()], enable_progress_bar=False)
    run_one(config, out, resume_from=out / "checkpoints" / "best.ckpt", enable_progress_bar=False)

    # offline-run-<start time>-<id>, with a suffix when both attempts start within one second
    folders = sorted((tmp_path / "wandb-dir" / "wandb").glob("offline-run-*"))
    assert not list((tmp_path / "wandb-dir" / "wandb").glob("run-*"))  # no online run was started
    run_id = wandb_run_id(config, out)
    assert [[f.name for f in folder.glob("run-*.wandb")] for folder in folders] == [[f"run-{run_id}.wandb"]] * 2
    first, retry = (read_wandb_run(folder / f"run-{run_id}.wandb") for folder in folders)
    # the failed attempt holds its first epoch and no results, the retry the epochs from its checkpoint on and the test
    assert {row["epoch"] for row in first["history"] if "epoch" in row} == {0}
    assert min(row["epoch"] for row in retry["history"] if "epoch" in row) == 1
    assert "test_acc_upright" not in first["summary"] and "test_acc_upright" in retry["summary"]
    assert (first["exit_code"], retry["exit_code"]) == (1, 0)  # the failed attempt's run ends failed


@pytest.mark.slow
def test_wandb_mode_disabled_writes_no_wandb_folder(bare_env, tmp_path):
    bare_env.setenv("WANDB_MODE", "disabled")
    bare_env.delenv("WANDB_DIR", raising=False)  # runs would go next to the run's output
    run_one(load_run_config(TRIAL), tmp_path / "run", enable_progress_bar=False)
    assert (tmp_path / "run" / "metrics.json").exists()
    assert not list(tmp_path.rglob("wandb"))
