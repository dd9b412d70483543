"""Every registered model, for every native group: forward shape, parameter counts, and the paper's exact sizes."""

import pytest
import torch

from equisweep.errors import UserError
from equisweep.exactness import check_exactness, equivariance_error
from equisweep.models import build_model, list_models, register_model

GROUPS = ["z2", "p4", "p4m"]
SMALL = {"p4cnn": None, "resnet18": 4, "resnet44": 2}


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("name", list_models())
def test_forward_gives_finite_logits(name, group):
    model = build_model(name, group=group, num_classes=7, in_channels=3, width=SMALL.get(name, 4))
    logits = model(torch.randn(2, 3, 29, 29))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


# The paper's parameter counts (shared/paper.md §2.1, §2.2): 3 input channels, 10 classes.
PAPER_PARAMS = [
    ("p4cnn", "z2", "coset", 25_570), ("p4cnn", "p4", "coset", 24_990),
    ("resnet18", "z2", "flatten", 11.17e6), ("resnet18", "p4", "flatten", 11.17e6),
    ("resnet18", "p4m", "flatten", 11.55e6), ("resnet44", "z2", "flatten", 2.64e6),
    ("resnet44", "p4", "flatten", 2.63e6), ("resnet44", "p4m", "flatten", 2.96e6),
]


@pytest.mark.parametrize(("name", "group", "head", "expected"), PAPER_PARAMS)
def test_default_widths_match_the_paper_parameter_counts(name, group, head, expected):
    model = build_model(name, group=group, in_channels=3, head=head)
    params = sum(p.numel() for p in model.parameters())
    if expected > 1e6:
        assert round(params / 1e6, 2) == pytest.approx(expected / 1e6)
    else:
        assert params == expected


# (model, exact sizes, approximate sizes) from the paper; small widths keep the float64 checks cheap.
KNOWN_SIZES = [("p4cnn", [28], [27, 29]), ("resnet44", [33], [32]), ("resnet18", [225], [224])]


def _known_cases():
    for name, exact, approx in KNOWN_SIZES:
        for group in ("p4", "p4m"):
            marks = [pytest.mark.slow] if name == "resnet18" else []
            yield pytest.param(name, group, exact, approx, marks=marks, id=f"{name}-{group}")


@pytest.mark.parametrize(("name", "group", "exact_sizes", "approx_sizes"), _known_cases())
def test_paper_models_exact_and_broken_at_the_paper_sizes(name, group, exact_sizes, approx_sizes):
    model = build_model(name, group=group, width=SMALL[name] or 3).double()
    for n in exact_sizes + approx_sizes:
        x = torch.randn(1, 1, n, n, dtype=torch.float64)
        errors = equivariance_error(model, x)
        report = check_exactness(model, n)
        worst_layer = max(v["max"] for v in errors.values())
        if n in exact_sizes:
            assert report.exact and worst_layer < 1e-10, (n, errors)
        else:
            assert not report.exact and worst_layer > 1e-3, (n, errors)
        # the invariant head: logits equal on every transformed input exactly when the model is exact
        assert (errors["output"]["max"] < 1e-10) == (n in exact_sizes)


def test_flatten_head_is_equivariant_inside_but_not_invariant():
    model = build_model("p4cnn", "p4", head="flatten").double()
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64)
    errors = equivariance_error(model, x)
    # what the head reads (its pooled features, "output") is exactly equivariant ...
    assert errors["block7"]["max"] < 1e-10 and errors["output"]["max"] < 1e-10
    with torch.no_grad():  # ... but its logits move when the input turns: a flatten head promises no invariance
        logits, turned = model.eval()(x), model(torch.rot90(x, 1, dims=(-2, -1)))
    assert (logits - turned).norm() / logits.norm() > 1e-3


def test_z2_model_is_not_rotation_equivariant():
    model = build_model("p4cnn", "z2").double()
    errors = equivariance_error(model, torch.randn(1, 1, 28, 28, dtype=torch.float64), "p4")
    assert errors["block7"]["max"] > 1e-2 and errors["output"]["max"] > 1e-5  # exact would be ~1e-15


def test_unknown_model_lists_the_choices():
    with pytest.raises(UserError, match="unknown model 'resnet45'; choose from: p4cnn, resnet18, resnet44"):
        build_model("resnet45")


@pytest.mark.parametrize(("kwargs", "field"), [({"group": "p5"}, "group"), ({"width": 0}, "width"),
                                               ({"head": "avg"}, "head"), ({"backend": "jax"}, "backend"),
                                               ({"group": "c8"}, "group"), ({"num_classes": -1}, "num_classes")])
def test_bad_build_arguments_name_the_field(kwargs, field):
    with pytest.raises(UserError, match=f"^{field}:"):
        build_model("p4cnn", **kwargs)


def test_model_options_reach_their_builder_and_unknown_ones_are_refused():
    model = build_model("p4cnn", "p4", dropout=0.0)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    with pytest.raises(UserError, match="^model: resnet18 takes no option 'dropout'"):
        build_model("resnet18", dropout=0.1)
    with pytest.raises(ValueError, match="dropout"):
        build_model("p4cnn", dropout=1.5)


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("p4cnn")(lambda **kw: None)
