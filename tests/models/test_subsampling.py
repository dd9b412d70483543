"""Adaptive subsampling: exact at every input size, as stride 2 where that is exact, refused where it cannot be."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from equisweep.errors import UserError
from equisweep.exactness import check_exactness
from equisweep.groups import get_group
from equisweep.models import GroupConv, LiftingConv, SpatialPool, build_model
from equisweep.models.layers import LayerSet
from equisweep.models.resnet import PreActBlock
from equisweep.models.subsampling import AdaptiveStride, AdaptiveSubsample
from equisweep.pipeline.train.config import load_run_config
from tests.helpers import assert_equivariant, relative_errors

TOL = 1e-10


def _train_a_few_steps(model: torch.nn.Module, size: int, steps: int = 3) -> None:
    """Move weights and batch-norm statistics off their initial values."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for step in range(steps):
        torch.manual_seed(100 + step)
        x = torch.randn(4, 1, size, size, dtype=torch.float64)
        optimizer.zero_grad()
        F.cross_entropy(model(x), torch.arange(4) % 10).backward()
        optimizer.step()
    model.eval()


def _pair(name: str, group: str, width: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The adaptive model and the strided one with the same weights (both float64, eval mode)."""
    adaptive = build_model(name, group, width=width, subsampling="adaptive").double().eval()
    strided = build_model(name, group, width=width).double().eval()
    for mine, theirs in zip(adaptive.parameters(), strided.parameters(), strict=True):
        theirs.data.copy_(mine.data)
    return adaptive, strided


@pytest.mark.slow
@pytest.mark.parametrize("group", ["p4", "p4m"])
# every size in a range; the P4CNN's one pool sees a size only modulo 2 and ResNet-44's two stride-2 stages modulo 4,
# so twelve and eight sizes in a row hold every case at least twice
@pytest.mark.parametrize(("name", "sizes"), [("p4cnn", range(20, 32)), ("resnet44", range(27, 35))])
def test_adaptive_models_are_exact_at_every_size_in_a_range(name, sizes, group):
    torch.manual_seed(0)
    model, strided = _pair(name, group, width=1)
    torch.manual_seed(1)
    inputs = {n: torch.randn(1, 1, n, n, dtype=torch.float64) for n in sizes}
    # The strided net breaks at some of these sizes, so the check below can fail.
    assert max(relative_errors(strided, inputs[30 if name == "resnet44" else 29], group).values()) > 1e-4
    for stage in ("at initialisation", "after training"):
        if stage == "after training":
            _train_a_few_steps(model, 27)
        for n, x in inputs.items():
            errors = relative_errors(model, x, group)
            assert max(errors.values()) < TOL, (stage, n, errors)


@pytest.mark.slow
@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_adaptive_resnet18_is_exact_at_224_and_225(group):
    torch.manual_seed(0)
    model = build_model("resnet18", group, width=1, subsampling="adaptive").double().eval()
    for stage in ("at initialisation", "after training"):
        if stage == "after training":
            _train_a_few_steps(model, 35, steps=2)
        for n in (224, 225):
            torch.manual_seed(n)
            assert_equivariant(model, torch.randn(1, 1, n, n, dtype=torch.float64), group, TOL)


@pytest.mark.parametrize(("name", "sizes"), [("p4cnn", (20, 28)), ("resnet44", (21, 29))])
def test_adaptive_equals_stride_where_stride_is_exact(name, sizes):
    torch.manual_seed(0)
    adaptive, strided = _pair(name, "p4", width=2)
    _train_a_few_steps(adaptive, 29)
    strided.load_state_dict({k.replace(".op.", "."): v for k, v in adaptive.state_dict().items()})
    for n in (*sizes, sizes[0] + 1):
        torch.manual_seed(n)
        x = torch.randn(2, 1, n, n, dtype=torch.float64)
        with torch.no_grad():
            gap = float((adaptive(x) - strided(x)).norm() / strided(x).norm())
        if n in sizes:
            assert gap < 1e-12, (n, gap)
        else:  # a size where stride 2 is not exact: adaptive keeps another grid for some sample
            assert gap > 1e-6, (n, gap)


@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize(("kernel", "padding"), [(1, 0), (2, 0), (3, 1), (4, 1), (3, 0), (5, 2)])
def test_adaptive_conv_and_pool_layers_are_exact_for_odd_and_even_kernels(group, kernel, padding):
    torch.manual_seed(kernel)
    lift = AdaptiveStride(LiftingConv(1, 3, kernel, group, padding=padding)).double()
    conv = AdaptiveStride(GroupConv(3, 3, kernel, group, padding=padding)).double()
    pool = AdaptiveStride(SpatialPool("max" if kernel % 2 == 0 else "avg", kernel, 1, min(padding, kernel // 2)))
    strided_lift = LiftingConv(1, 3, kernel, group, stride=2, padding=padding).double()
    strided_lift.load_state_dict(lift.op.state_dict())
    for n in (12, 13, 14, 15):
        x = torch.randn(2, 1, n, n, dtype=torch.float64)
        assert_equivariant(lift, x, group, TOL)
        fmap = torch.randn(2, 3, get_group(group).order, n, n, dtype=torch.float64)
        assert_equivariant(conv, fmap, group, TOL)
        assert_equivariant(pool, fmap, group, TOL)
        if (n + 2 * padding - kernel) % 2 == 0:  # stride-1 map of odd side: the centred grid, as stride 2 keeps
            torch.testing.assert_close(lift(x), strided_lift(x), rtol=1e-12, atol=1e-12)


def test_subsample_keeps_the_largest_component_and_breaks_ties_towards_the_strided_grid():
    subsample = AdaptiveSubsample()
    x = torch.zeros(1, 2, 4, 4, 6)
    x[..., 1::2, 0::2] = torch.randn(1, 2, 4, 2, 3)
    assert torch.equal(subsample(x), x[..., 1::2, 0::2])
    # (0, 0) and (1, 1) have the same norm and different contents: the tie goes to (0, 0), stride 2's grid.
    tie = torch.zeros(1, 1, 4, 4)
    tie[0, 0, 0, 0], tie[0, 0, 3, 1] = 1.0, 1.0
    assert torch.equal(subsample(tie), tie[..., ::2, ::2]) and not torch.equal(tie[..., ::2, ::2], tie[..., 1::2, 1::2])
    zero = torch.zeros(3, 2, 4, 7, 7)
    assert subsample(zero).shape == (3, 2, 4, 4, 4)
    # An odd axis keeps its centred grid; an even one chooses: here the largest is in columns 1::2.
    mixed = torch.zeros(2, 1, 5, 4)
    mixed[..., ::2, 1::2] = 1.0
    mixed[..., 1::2, :] = 5.0  # rows off the centred grid never count
    assert torch.equal(subsample(mixed), mixed[..., ::2, 1::2])


def test_shortcut_samples_the_grid_its_block_chose():
    torch.manual_seed(3)
    block = PreActBlock(LayerSet(get_group("p4"), "adaptive"), 2, 4, stride=2).double().eval()
    seen = {}
    for name, module in (("main", block.conv1.subsample), ("shortcut", block.shortcut[0].subsample)):
        module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, (a[0], out)))
    block(torch.randn(16, 2, 4, 12, 12, dtype=torch.float64))

    def component(stride1: torch.Tensor, kept: torch.Tensor) -> list[int]:
        grids = [stride1[..., a::2, b::2] for a in (0, 1) for b in (0, 1)]
        return [next(k for k, grid in enumerate(grids) if torch.equal(grid[i], kept[i])) for i in range(len(kept))]

    main, shortcut = component(*seen["main"]), component(*seen["shortcut"])
    assert main == shortcut
    own = AdaptiveSubsample()(seen["shortcut"][0])  # what the shortcut would keep choosing on its own
    assert not torch.equal(own, seen["shortcut"][1])  # so sharing the grid is not a coincidence of this input
    with pytest.raises(RuntimeError, match="run that one first"):
        block.shortcut(torch.randn(16, 2, 4, 12, 12, dtype=torch.float64))


@pytest.mark.parametrize("relaxation", ["relaxed", "rpp", "partial"])
def test_relaxed_models_take_adaptive_subsampling(relaxation):
    torch.manual_seed(0)
    model = build_model("p4cnn", "p4", width=2, relaxation=relaxation, subsampling="adaptive").double().eval()
    report = check_exactness(model, 29, nearest=False)
    assert report.exact and [layer.kind for layer in report.layers] == ["adaptive"]
    assert_equivariant(model, torch.randn(2, 1, 29, 29, dtype=torch.float64), "p4", TOL)


def test_static_check_reports_adaptive_layers_exact_with_a_note():
    for name, n in (("p4cnn", 29), ("resnet18", 224), ("resnet44", 32)):
        assert not check_exactness(build_model(name, "p4", width=2), n, nearest=False).exact
        report = check_exactness(build_model(name, "p4", width=2, subsampling="adaptive"), n, nearest=False)
        assert report.exact and report.layers and all(layer.kind == "adaptive" for layer in report.layers)
        assert any(note.startswith("adaptive subsampling") and "exact at any size" in note for note in report.notes)


@pytest.mark.parametrize(("options", "message"), [
    ({"subsampling": "polyphase"}, "subsampling: unknown subsampling 'polyphase'; choose from: stride, adaptive"),
    ({"subsampling": "adaptive", "backend": "e2cnn", "group": "c4"}, "subsampling: 'adaptive' needs the native"),
])
def test_bad_subsampling_is_refused_in_one_line(options, message):
    with pytest.raises(UserError, match=f"^{message}"):
        build_model("p4cnn", **{"group": "p4", **options})
    with pytest.raises(UserError, match=f"^{message}"):
        load_run_config(options)


@pytest.mark.slow
def test_cli_refuses_bad_subsampling_with_exit_2(tmp_path):
    for flags in (["--subsampling", "polyphase"], ["--subsampling", "adaptive", "--backend", "e2cnn", "--group", "c4"]):
        result = subprocess.run([sys.executable, "-m", "equisweep", "train", *flags, "--out", str(tmp_path / "run")],
                                capture_output=True, text=True, timeout=300)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("equisweep: error: subsampling:")
        assert not (tmp_path / "run").exists()
