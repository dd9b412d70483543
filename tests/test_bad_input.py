"""Bad input, as a user types it: one ``equisweep: error: <field>: ...`` line, exit code 2, and nothing half-written
(no run directory, no sweep storage, no dataset folder). Each case runs the real command line in this process."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from torchvision import datasets

from equisweep.cli import main
from equisweep.errors import UserError
from equisweep.models import build_model
from equisweep.pipeline.sweep.spec import MAX_TRIALS
from equisweep.pipeline.train.config import MAX_EPOCHS
from tests.helpers import run_python


def _command(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """Run ``equisweep ARGS`` through the real entry point: its exit code and what it wrote to stderr."""
    monkeypatch.setattr(sys, "argv", ["equisweep", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code or 0, capsys.readouterr().err


def _refused(capsys, monkeypatch, *args: str, trained: bool = False) -> str:
    """The one error line of a refused command (exit code 2), without its ``equisweep: error:`` prefix; after a run
    that ``trained``, the progress bar's lines come first."""
    code, err = _command(capsys, monkeypatch, *args)
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1].startswith("equisweep: error: "), (code, err[-2000:])
    assert len(lines) == 1 or (trained and "Traceback" not in err), err[-2000:]
    return lines[-1].removeprefix("equisweep: error: ")


def _spec(path: Path, storage: Path, **settings) -> Path:
    path.write_text(yaml.safe_dump({"name": "bad", "dataset": "mnist69", "storage": str(storage), **settings}))
    return path


@pytest.mark.parametrize(("settings", "message"), [
    ({"grid": {"seed": [0, 0]}}, "grid: the run seed=0 comes twice; remove the repeated value"),
    ({"variants": [{"input_size": 28}, {"input_size": 29}], "grid": {"input_size": [28], "seed": [0, 1]}},
     "variants: variants[0] and variants[1] both give the run input_size=28, seed=0; drop one"),
    ({"variants": [{"group": "p4"}, {"input_size": 28}]}, "variants: variants[0] and variants[1] both give the run"),
    ({"grid": {"seed": {"range": [0, 100_000_000]}}},
     f"grid: axis 'seed': range [0, 100000000] holds 100000000 values, more than the limit of {MAX_TRIALS}"),
    ({"grid": {"seed": {"range": [0, 5000]}, "input_size": [28, 29, 30]}},
     f"grid: variants x grid x search.num_samples make 15000 trials, more than the limit of {MAX_TRIALS}"),
    ({"epochs": 10**12}, f"epochs: must be at most {MAX_EPOCHS}, got 1000000000000"),
    ({"asymmetry": "maybe"}, "asymmetry: must be true or false, got 'maybe'"),
])
def test_a_spec_that_would_repeat_a_run_or_never_end_is_refused(tmp_path, capsys, monkeypatch, settings, message):
    spec = _spec(tmp_path / "spec.yaml", tmp_path / "storage", **settings)
    for dry_run in (["--dry-run"], []):
        assert _refused(capsys, monkeypatch, "sweep", spec, *dry_run).startswith(message)
    assert not (tmp_path / "storage").exists()


@pytest.mark.parametrize("command", ["sweep", "train --config"])
@pytest.mark.parametrize(("content", "problem"), [
    ("latin-1", "is not UTF-8 text (byte 9); save it as UTF-8"),
    ("directory", "is a directory; pass the YAML file itself"),
])
def test_a_settings_file_that_is_no_utf8_text_file_is_named(tmp_path, capsys, monkeypatch, command, content,
                                                               problem):
    path = tmp_path / "settings.yaml"
    if content == "directory":
        path.mkdir()
    else:
        path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    field = "spec" if command == "sweep" else "config"
    out = ["--out", tmp_path / "run"] if command != "sweep" else []
    message = _refused(capsys, monkeypatch, *command.split(), path, *out)
    assert message == f"{field}: {path} {problem}"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--precision", "8-bit"], "precision: must be '32-true', '64-true', '16-true', 'bf16-true', '16-mixed' or "
                               "'bf16-mixed', got '8-bit'"),
    (["--accelerator", "tpu-ish"], "accelerator: must be 'auto', 'cpu', 'gpu', 'cuda' or 'mps', got 'tpu-ish'"),
    (["--epochs", str(MAX_EPOCHS + 1)], f"epochs: must be at most {MAX_EPOCHS}"),
])
def test_train_refuses_a_setting_lightning_would_reject(tmp_path, capsys, monkeypatch, flags, message):
    assert _refused(capsys, monkeypatch, "train", *flags, "--out", tmp_path / "run").startswith(message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--eq-penalty", "-1"], "eq_penalty: must be at least 0.0, got -1.0"),
    (["--eq-penalty-kind", "wobble"], "eq_penalty_kind: must be 'orbit' or 'lie', got 'wobble'"),
    (["--invariance", "spin"], "invariance: unknown invariance 'spin'; choose from: none, average, canonicalize, "
                               "augerino"),
    (["--invariance", "{method: augerino, samples: 0}"], "invariance.samples: must be greater than or equal to 1"),
    (["--invariance", "{method: average, group: c8}"], "invariance: average acts by quarter turns, and c8 has other "
                                                       "rotations; set its group"),
])
def test_train_refuses_a_bad_family_setting(tmp_path, capsys, monkeypatch, flags, message):
    assert _refused(capsys, monkeypatch, "train", "--dataset", "mnist69", *flags,
                    "--out", tmp_path / "run").startswith(message)
    assert not (tmp_path / "run").exists()


def test_canonicalize_refuses_a_non_square_image():
    net = build_model("p4cnn", group="p4", width=2, invariance="canonicalize")
    with pytest.raises(UserError, match=r"^invariance: canonicalize turns images by quarter turns, which needs a "
                                        r"square image; got 28x30 \(set a square input_size\)$"):
        net(torch.zeros(1, 1, 28, 30))


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
def test_train_on_a_gpu_this_machine_lacks_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    message = _refused(capsys, monkeypatch, "train", "--accelerator", "gpu", "--out", tmp_path / "run")
    assert message == "accelerator: 'gpu' but no such device is visible here; use --accelerator cpu (or auto)"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out", ["a-file", "a-file/run"])
def test_train_into_a_file_is_refused(tmp_path, capsys, monkeypatch, out):
    (tmp_path / "a-file").write_text("mine\n")
    message = _refused(capsys, monkeypatch, "train", "--dataset", "mnist69", "--out", tmp_path / out)
    assert message == (f"out: cannot write the run directory {tmp_path / out}: {tmp_path / 'a-file'} is a file, not "
                       "a directory; pass another --out")
    assert (tmp_path / "a-file").read_text() == "mine\n"


def test_sweep_storage_that_cannot_be_written_is_named_by_the_dry_run_and_refused_by_the_run(tmp_path, capsys,
                                                                                             monkeypatch):
    (tmp_path / "a-file").write_text("mine\n")
    spec = _spec(tmp_path / "spec.yaml", tmp_path / "a-file" / "sweeps")
    problem = (f"storage: cannot write {tmp_path / 'a-file' / 'sweeps' / 'bad'}: {tmp_path / 'a-file'} is a file, "
               "not a directory; pass another --storage")
    code, err = _command(capsys, monkeypatch, "sweep", spec, "--dry-run")
    assert code == 0 and f"equisweep: warning: {problem}" in err.splitlines()
    assert _refused(capsys, monkeypatch, "sweep", spec) == problem
    assert (tmp_path / "a-file").read_text() == "mine\n"


@pytest.mark.parametrize("data_dir", ["new/data", "yours"])
def test_a_failed_download_says_so_and_removes_only_what_it_made(tmp_path, capsys, monkeypatch, data_dir):
    """No network: torchvision's own download, sent to a closed port on this machine, fails as it would offline."""
    monkeypatch.setattr(datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    (tmp_path / "yours").mkdir()
    (tmp_path / "yours" / "notes.txt").write_text("mine\n")
    message = _refused(capsys, monkeypatch, "data", "download", "cifar10", "--data-dir", tmp_path / data_dir)
    assert message.startswith(f"dataset 'cifar10': the download into {tmp_path / data_dir} failed (")
    assert message.endswith("); check the network, or fetch its files on a machine that has one")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["yours", "yours/notes.txt"]


@pytest.mark.slow
@pytest.mark.parametrize("out", ["new/run", "yours"])
def test_a_failed_train_leaves_no_run_directory_it_made(tmp_path, capsys, monkeypatch, out):
    """A validation image that cannot be decoded fails the run after it started writing: the directories it made
    go, one the user had stays."""
    for split in ("train", "val", "test"):
        for label in ("ant", "bee"):
            (tmp_path / "images" / split / label).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (12, 12), (100 * i, 50 + 90 * i, 200 * (label == "ant"))).save(
                    tmp_path / "images" / split / label / f"{i}.png")
    (tmp_path / "images" / "val" / "bee" / "1.png").write_bytes(b"not a png")
    (tmp_path / "yours").mkdir()
    (tmp_path / "yours" / "notes.txt").write_text("mine\n")
    message = _refused(capsys, monkeypatch, "train", "--dataset", "folder", "--data-dir", tmp_path / "images",
                       "--epochs", "1", "--batch-size", "2", "--num-workers", "0",
                       "--wandb-mode", "disabled", "--out", tmp_path / out, trained=True)
    assert message.startswith("data_dir: cannot decode the image ")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "yours" / "notes.txt").read_text() == "mine\n"


def test_check_answers_at_a_huge_input_size_in_little_time_and_memory():
    """The static rule is arithmetic on sizes: a 100,000,000-pixel side costs what 28 costs (it took 21 GB)."""
    code = ("import json, resource, time\n"
            "from equisweep.exactness import check_exactness\n"
            "from equisweep.models import build_model\n"
            "net = build_model('p4cnn', group='p4')\n"
            "check_exactness(net, 28)\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "start = time.perf_counter()\n"
            "report = check_exactness(net, 100_000_000)\n"
            "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
            "seconds = time.perf_counter() - start\n"
            "print(json.dumps([report.exact, report.nearest_exact_sizes, seconds, grown / 1024]))\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    exact, nearest, seconds, grown_mb = json.loads(result.stdout)
    assert exact is True and nearest == [99_999_998, 100_000_002]
    assert seconds < 5 and grown_mb < 50, result.stdout  # measured: about 0.05 s and 0 MB


def test_check_measure_refuses_a_size_it_would_have_to_run(capsys, monkeypatch):
    """--measure runs the network at the size given: beyond its stated limit it refuses instead of allocating."""
    message = _refused(capsys, monkeypatch, "check", "p4cnn", "--input-size", "100000000", "--measure")
    assert message.startswith("--input-size:") and "512" in message and "--measure" in message


class _Halve(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=0.5)


class _Crop(torch.nn.Module):
    def forward(self, x):
        return x[..., 1:-1, 1:-1]


@pytest.mark.parametrize(("layers", "size", "problem", "fix"), [
    # interpolate cannot halve one pixel: torch's own error, turned into the size refusal
    (lambda: [_Halve()], 1, "layer '1' fails on a 1x1 map (Input and output sizes should be greater than 0",
     "the smallest size that fits is 2"),
    # a fixed 3x3 map cropped twice: nothing is left at any input size
    (lambda: [torch.nn.AdaptiveAvgPool2d(3), _Crop(), _Crop()], 28, "layer '3' would get an empty map from a 1x1",
     "no input size fits"),
])
def test_check_refuses_a_size_the_model_cannot_run_at(capsys, monkeypatch, layers, size, problem, fix):
    """A registered model that cannot run at --input-size gets the one-line size refusal, never a verdict or a
    traceback."""
    from equisweep.models import registry

    def shrinking(layer_set, in_channels, **_):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 2, 3, padding=1), *layers())

    monkeypatch.setitem(registry._REGISTRY, "shrinking", shrinking)
    message = _refused(capsys, monkeypatch, "check", "shrinking", "--input-size", str(size))
    assert message.startswith(f"input_size: {size} is too small for shrinking: {problem}"), message
    assert message.endswith(fix), message
