"""The measured error: its structure, its alignment of maps, and that it leaves the model as it was."""

import pytest
import torch

from equisweep.exactness import equivariance_error
from equisweep.models import build_model


def test_error_per_layer_and_element_with_the_identity_at_zero():
    model = build_model("p4cnn", "p4m").double()
    errors = equivariance_error(model, torch.randn(3, 1, 29, 29, dtype=torch.float64))
    assert list(errors) == [*(f"block{i}" for i in range(1, 8)), "head", "output"]
    assert list(errors["output"]["per_element"]) == ["r0", "r90", "r180", "r270", "r0m", "r90m", "r180m", "r270m"]
    assert all(layer["per_element"]["r0"] == 0.0 for layer in errors.values())
    assert errors["block1"]["max"] < 1e-12 < errors["block2"]["max"]  # the lifting conv is exact, the pool is not


def test_named_layers_and_eval_mode_restored():
    model = build_model("resnet44", "p4", width=2)
    model.train()
    errors = equivariance_error(model, torch.randn(2, 1, 33, 33), layers=["stem", "layers.1.0.conv1"])
    assert list(errors) == ["stem", "layers.1.0.conv1", "output"]
    assert max(v["max"] for v in errors.values()) < 1e-5
    assert model.training


def test_unknown_layer_and_bad_input_are_refused():
    model = build_model("p4cnn", "p4")
    with pytest.raises(ValueError, match="no submodule named 'nope'"):
        equivariance_error(model, torch.randn(1, 1, 28, 28), layers=["nope"])
    with pytest.raises(ValueError, match="square"):
        equivariance_error(model, torch.randn(1, 1, 28, 30))


def test_one_forward_pass_over_the_orbit():
    model = build_model("p4cnn", "p4m")
    calls = []
    model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    equivariance_error(model, torch.randn(5, 1, 28, 28))
    assert calls == [5 * 8]


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_flatten_head_is_measured_on_what_it_promises(group):
    # The flatten head's logits are not invariant by design: a linear layer reads the C·|G| pooled features, which
    # a turn of the input permutes. An exact net must measure ~0 on those features, a broken grid must not.
    model = build_model("p4cnn", group, head="flatten").double()
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        turned = model(torch.rot90(x, 1, dims=(-2, -1)))
    assert (turned - model(x)).abs().max() > 1e-3  # the logits themselves do move
    errors = equivariance_error(model, x)
    assert errors["output"]["max"] < 1e-10 and errors["head"]["max"] < 1e-10
    approximate = equivariance_error(model, torch.randn(2, 1, 29, 29, dtype=torch.float64))
    assert approximate["output"]["max"] > 1e-3
