"""Relaxed, RPP and partial group convs: exact at initialisation, broken once untied, equal to the exact layer
when tied, with penalties and diagnostics that see the difference, in every model and group."""

import pytest
import torch

from equisweep.errors import UserError
from equisweep.exactness import check_exactness, equivariance_error
from equisweep.groups import get_group
from equisweep.models import ClassifierHead, GroupConv, GroupPool, LiftingConv, build_model, get_relaxation
from equisweep.models.partial_gconv import MaskedClassifierHead, PartialGroupConv, PartialLiftingConv
from equisweep.models.relaxation import layer_departures, relaxation_settings, resolve_relaxation
from equisweep.models.relaxed_gconv import RelaxedGroupConv, RelaxedLiftingConv
from equisweep.models.rpp_gconv import RPPGroupConv, RPPLiftingConv
from tests.helpers import assert_equivariant, relative_errors
from tests.models.test_layers import _exact_size

METHODS = ["relaxed", "rpp", "partial"]
GROUPS = ["p4", "p4m"]
ORDER = {"p4": 4, "p4m": 8}
LAYERS = {"relaxed": (RelaxedLiftingConv, RelaxedGroupConv), "rpp": (RPPLiftingConv, RPPGroupConv),
          "partial": (PartialLiftingConv, PartialGroupConv)}
EXACT_AT = {"p4cnn": 28, "resnet44": 33}
F64 = 1e-10


def relaxation_penalty(model: torch.nn.Module, method: str, **options) -> torch.Tensor:
    record, validated = resolve_relaxation({"method": method, **options})
    return record.penalty(model, validated)


def _untie(module: torch.nn.Module) -> None:
    """Set the relaxed parameters of every relaxed layer unequal, as training on asymmetric data would."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (RelaxedLiftingConv, RelaxedGroupConv)):
                layer.relaxed_weights.add_(0.5 * torch.randn_like(layer.relaxed_weights))
            elif isinstance(layer, (RPPLiftingConv, RPPGroupConv)):
                layer.free.copy_(0.3 * layer.filter_bank().std() * torch.randn_like(layer.free))
            elif isinstance(layer, (PartialLiftingConv, PartialGroupConv)):
                layer.keep_logits[0] = -5.0  # drop r90


def _layers(method: str, group: str, kernel: int, stride: int, padding: int):
    lift_type, conv_type = LAYERS[method]
    lift = lift_type(3, 4, kernel, group, stride, padding).double()
    conv = conv_type(3, 4, kernel, group, stride, padding).double()
    return lift.eval(), conv.eval()


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [1, 3, 4, 5])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_exact_at_initialisation_and_broken_once_untied(method, kernel, stride, group):
    padding = kernel // 2
    n = _exact_size(kernel, stride, padding)
    lift, conv = _layers(method, group, kernel, stride, padding)
    image, fmap = torch.randn(2, 3, n, n, dtype=torch.float64), torch.randn(2, 3, ORDER[group], n, n).double()
    assert_equivariant(lift, image, group, F64)
    assert_equivariant(conv, fmap, group, F64)
    assert get_relaxation(method).diagnostics(conv) == {"": 0.0}
    _untie(lift), _untie(conv)
    assert max(relative_errors(lift, image, group).values()) > 1e-3
    assert max(relative_errors(conv, fmap, group).values()) > 1e-3
    assert get_relaxation(method).diagnostics(conv)[""] > 0


def test_relaxed_bank_mixes_by_output_element():
    """Oracle from torch.rot90/roll alone: output slot r holds Σ_l w[r, l] rot_r(roll(Ψ_l, r)) for p4."""
    conv = RelaxedGroupConv(1, 1, 3, "p4", banks=2)
    with torch.no_grad():
        conv.relaxed_weights.copy_(torch.randn(4, 2))
    banks = conv.weight[:, 0]  # [L, 4, 3, 3]
    bank = conv.filter_bank().view(4, 4, 3, 3)  # [slot, input slot, k, k]
    for r in range(4):
        moved = torch.rot90(torch.roll(banks, r, dims=1), r, dims=(-2, -1))  # [L, 4, 3, 3]
        expected = (conv.relaxed_weights[r].view(2, 1, 1, 1) * moved).sum(0)
        torch.testing.assert_close(bank[r], expected)


def _tied_pair(method: str, exact_type, group: str):
    """A relaxed layer in its tied state and the exact layer sharing its θ and bias."""
    relaxed_type = LAYERS[method][exact_type is GroupConv]
    options = {"banks": 1} if method == "relaxed" else {}
    relaxed = relaxed_type(3, 5, 3, group, 2, 1, **options).double()
    exact = exact_type(3, 5, 3, group, 2, 1).double()
    with torch.no_grad():
        exact.weight.copy_(relaxed.weight)
        exact.bias.copy_(relaxed.bias)
    return relaxed, exact


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("exact_type", [LiftingConv, GroupConv], ids=["lift", "gconv"])
@pytest.mark.parametrize("method", METHODS)
def test_tied_layer_equals_the_exact_layer(method, exact_type, group):
    relaxed, exact = _tied_pair(method, exact_type, group)
    shape = (2, 3, 9, 9) if exact_type is LiftingConv else (2, 3, ORDER[group], 9, 9)
    x = torch.randn(*shape, dtype=torch.float64)
    if method == "partial":
        relaxed.train()
        with torch.no_grad():
            relaxed.keep_logits.fill_(50.0)  # every training sample keeps every element
    torch.testing.assert_close(relaxed(x), exact(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_penalty_zero_at_initialisation_and_grows_when_untied(method):
    model = build_model("p4cnn", group="p4", width=2, relaxation=method)
    defaults = relaxation_settings(method)
    no_decay = {"equiv_wd": 0.0} if method == "rpp" else {}
    assert relaxation_penalty(model, method, **no_decay).item() == 0.0
    if method == "rpp":  # the equivariant path's own weight decay is the only term at initialisation
        theta = sum(layer.weight.square().sum() for layer in model.modules() if isinstance(layer, RPPGroupConv))
        theta = theta + model.block1[0].weight.square().sum()
        assert relaxation_penalty(model, method).item() == pytest.approx(defaults["equiv_wd"] * theta.item())
    layer = model.block3[0]
    with torch.no_grad():
        if method == "relaxed":
            layer.relaxed_weights[0, 1] += 0.5  # 2·(|G| − 1) ordered pairs differ by 0.5
            expected = defaults["alpha"] * 2 * 3 * 0.5
        elif method == "rpp":
            layer.free.fill_(0.1)
            expected = defaults["free_wd"] * 0.01 * layer.free.numel()
        else:
            model.block1[0].keep_logits.fill_(0.0)  # the lifting layer keeps less than the one after it
            expected = defaults["lambda"] * float(model.block2[0].keep_probabilities().mean() - 0.625)
    penalty = relaxation_penalty(model, method, **no_decay)
    assert penalty.item() == pytest.approx(expected, rel=1e-5) and penalty.item() > 0
    penalty.backward()
    name = {"relaxed": "relaxed_weights", "rpp": "free", "partial": "keep_logits"}[method]
    owner = model.block1[0] if method == "partial" else layer
    assert getattr(owner, name).grad.abs().sum() > 0


def test_the_exact_net_has_no_penalty_and_each_methods_penalty_of_it_is_zero():
    assert get_relaxation("none").penalty is None
    for method in METHODS:
        assert relaxation_penalty(build_model("p4cnn", width=2), method).item() == 0.0


def test_each_method_is_a_record_with_its_layers_options_and_defaults():
    assert [relaxation_settings(name) for name in ["none", *METHODS]] == [
        {"method": "none"}, {"method": "relaxed", "banks": 2, "alpha": 1e-4},
        {"method": "rpp", "free_wd": 1.0, "equiv_wd": 1e-5},
        {"method": "partial", "lambda": 1e-3, "keep_init": 0.8, "temperature_start": 0.5, "temperature_end": 1e-4,
         "lr_probs": 0.02}]
    settings = {"method": "partial", "lambda": 0.1, "keep_init": 0.9, "temperature_start": 1.0,
                "temperature_end": 0.01, "lr_probs": 0.1}
    assert relaxation_settings(settings) == settings  # the full mapping reads back as itself
    for method in METHODS:
        record, options = resolve_relaxation(method)
        layers = record.layers(get_group("p4"), options, "stride")
        assert (type(layers.lift(1, 2, 3)), type(layers.conv(2, 2, 3))) == LAYERS[method]
    net = build_model("p4cnn", width=2, relaxation={"method": "relaxed", "banks": 3})
    assert net.block2[0].banks == 3


def test_partial_samples_in_training_and_is_deterministic_in_evaluation():
    conv = PartialGroupConv(2, 3, 3, "p4m", padding=1)
    with torch.no_grad():
        conv.keep_logits.copy_(torch.tensor([-1.0, 0.5, 2.0, -3.0, 0.1, 1.0, -0.2]))
    draws = []
    for _ in range(2):
        conv.generator = torch.Generator().manual_seed(7)
        draws.append(torch.stack([conv.sample_mask() for _ in range(50)]))
    assert torch.equal(draws[0], draws[1])  # reproducible from the seeded generator
    assert draws[0][:, 0].eq(1).all()  # the identity is always kept
    assert len({tuple(row.tolist()) for row in draws[0]}) > 5  # and the rest vary from step to step
    conv.eval()
    expected = torch.tensor([1.0, 0, 1, 1, 0, 1, 1, 0])
    assert all(torch.equal(conv.sample_mask(), expected) for _ in range(5))


def test_partial_straight_through_gradient_reaches_the_logits():
    conv = PartialGroupConv(2, 3, 3, "p4", padding=1)
    with torch.no_grad():
        conv.keep_logits.zero_()
    conv.generator = torch.Generator().manual_seed(0)
    conv(torch.randn(2, 2, 4, 6, 6)).square().sum().backward()
    assert conv.keep_logits.grad.abs().sum() > 0


def test_partial_mask_zeroes_dropped_slots():
    conv = PartialGroupConv(2, 3, 3, "p4", padding=1).eval()
    with torch.no_grad():
        conv.keep_logits[1] = -5.0  # drop r180, slot 2
    out = conv(torch.randn(2, 2, 4, 6, 6))
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    assert (out[:, :, [0, 1, 3]] != 0).all()
    assert torch.equal(conv.last_mask, torch.tensor([1.0, 1, 0, 1]))
    assert get_relaxation("partial").diagnostics(conv) == {"": 0.25}


@pytest.mark.parametrize("kind", ["max", "mean"])
def test_dropped_element_leaves_group_pooling(kind):
    keep = torch.tensor([1.0, 0, 1, 1])
    x = torch.randn(2, 3, 4, 5, 5)
    moved = x.clone()
    moved[:, :, 1] = 100.0
    pool = GroupPool(kind)
    torch.testing.assert_close(pool(x, keep), pool(moved, keep))
    assert not torch.allclose(pool(x), pool(moved))
    torch.testing.assert_close(pool(x, keep), GroupPool(kind)(x[:, :, [0, 2, 3]]))


@pytest.mark.parametrize("pool_group_first", [True, False])
def test_masked_head_pools_over_the_last_partial_layers_kept_elements(pool_group_first):
    conv = PartialGroupConv(2, 3, 3, "p4", padding=1).eval()
    with torch.no_grad():
        conv.keep_logits[0] = -5.0  # drop r90, slot 1
    head = MaskedClassifierHead(conv, "coset", 3, 4, 5, pool_group_first)
    plain = ClassifierHead("coset", 3, 4, 5, pool_group_first)
    plain.load_state_dict(head.state_dict())
    y = conv(torch.randn(2, 2, 4, 6, 6))
    lifted = y.clone()
    lifted[:, :, 1] = 100.0  # what norm and ReLU might put into a dropped slot
    torch.testing.assert_close(head(lifted), head(y))
    assert not torch.allclose(plain(lifted), plain(y))
    assert set(dict(head.named_parameters())) == {"linear.weight", "linear.bias"}  # the conv is not re-registered


def _model_cases():
    for name in EXACT_AT:
        for group in GROUPS:
            for method in METHODS:
                marks = [pytest.mark.slow] if name == "resnet44" else []
                yield pytest.param(name, group, method, marks=marks, id=f"{name}-{group}-{method}")


@pytest.mark.parametrize(("name", "group", "method"), _model_cases())
def test_models_exact_at_initialisation_and_broken_once_untied(name, group, method):
    n = EXACT_AT[name]
    model = build_model(name, group=group, width=2, relaxation=method).double()
    x = torch.randn(1, 1, n, n, dtype=torch.float64)
    assert max(v["max"] for v in equivariance_error(model, x).values()) < F64
    report = check_exactness(model, n, nearest=False)
    assert report.exact and report.relaxed and "all tied now" in report.notes[-1]
    assert "EXACT only while tied" in report.to_table()
    assert set(get_relaxation(method).diagnostics(model).values()) == {0.0}
    _untie(model)
    assert equivariance_error(model, x)["output"]["max"] > 1e-3
    report = check_exactness(model, n, nearest=False)
    assert report.exact and report.relaxed and "untied now: " in report.notes[-1]
    diagnostics = get_relaxation(method).diagnostics(model)
    assert min(diagnostics.values()) > 0 and all(name in report.notes[-1] for name in diagnostics)


def test_exact_model_has_no_relaxed_layers():
    model = build_model("p4cnn", width=2)
    assert not check_exactness(model, 28, nearest=False).relaxed
    assert layer_departures(model) == {}


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"group": "z2", "relaxation": "relaxed"}, "relaxation: 'relaxed' needs a p4 or p4m group with the native"),
    ({"group": "c4", "backend": "e2cnn", "relaxation": "rpp"}, "relaxation: 'rpp' needs a p4 or p4m group"),
    ({"group": "p4", "relaxation": "soft"}, "relaxation: unknown relaxation 'soft'; choose from: none, relaxed"),
    ({"relaxation": {"method": "relaxed", "banks": 0}}, "relaxation.banks: must be greater than or equal to 1, got 0"),
    ({"relaxation": {"method": "rpp", "free": 1}}, "relaxation.free: rpp takes no option 'free'; its options: free_wd"),
    ({"relaxation": {"banks": 2}}, "relaxation: give a method's name or {method: NAME, ...its options}"),
])
def test_bad_relaxation_is_refused_in_one_line(kwargs, expected):
    with pytest.raises(UserError) as error:
        build_model("p4cnn", width=2, **kwargs)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


SMOKE_SIZE = {"p4cnn": 28, "resnet18": 17, "resnet44": 17}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("name", list(SMOKE_SIZE))
def test_forward_backward_smoke(name, group, method):
    relaxation = {"method": "relaxed", "banks": 3} if method == "relaxed" else method
    model = build_model(name, group=group, width=2, num_classes=3, relaxation=relaxation).train()
    logits = model(torch.randn(2, 1, SMOKE_SIZE[name], SMOKE_SIZE[name]))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    (logits.square().mean() + relaxation_penalty(model, method)).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    relaxed_params = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in
                      ("relaxed_weights", "free", "keep_logits")]
    assert relaxed_params and any(p.grad.abs().sum() > 0 for p in relaxed_params)
