"""The NumPy-2 shim for e2cnn 0.2.3: needed, enough for C_N/D_N layers, local to e2cnn, idempotent."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import equisweep
from equisweep.models._e2cnn_compat import import_e2cnn
from tests.helpers import run_python


def test_numpy_2_is_installed():
    assert int(np.__version__.split(".")[0]) >= 2


def test_unpatched_e2cnn_fails_on_a_dihedral_conv():
    # Without the shim a D4 regular R2Conv dies hashing its basis (ndarray.tostring); if this starts passing,
    # e2cnn was fixed upstream and the shim can go.
    code = ("from e2cnn import gspaces, nn; gs = gspaces.FlipRot2dOnR2(4); "
            "t = nn.FieldType(gs, [gs.regular_repr]); nn.R2Conv(t, t, 3)")
    result = run_python(code)
    assert result.returncode != 0 and "tostring" in result.stderr


@pytest.mark.parametrize("recompute", [False, True])  # cached basis (hashes it) and freshly sampled basis
@pytest.mark.parametrize("n", [3, 4, 8])
def test_dihedral_regular_r2conv_builds_and_runs(n, recompute):
    e2cnn = import_e2cnn()
    gspace = e2cnn.gspaces.FlipRot2dOnR2(n)
    field = e2cnn.nn.FieldType(gspace, [gspace.regular_repr] * 2)
    conv = e2cnn.nn.R2Conv(field, field, 3, padding=1, recompute=recompute)
    y = conv(e2cnn.nn.GeometricTensor(torch.randn(1, field.size, 7, 7), field)).tensor
    assert y.shape == (1, 4 * n, 7, 7) and torch.isfinite(y).all()


def test_kernel_helpers_accept_python_scalars():
    utils = import_e2cnn().kernels.utils  # np.array(k, copy=False) on an int needs a copy
    assert utils.psi(0.3, k=2).shape == utils.chi(1).shape == utils.psichi(0.3, 1, k=2).shape == (2, 2, 1, 1)


def test_o2_representation_induced_from_so2_builds():
    group = import_e2cnn().group  # this path allocates with np.float
    o2 = group.o2_group(4)
    so2, _, _ = o2.subgroup((None, -1))
    assert o2.induced_representation((None, -1), so2.irrep(1)).size == 4


def test_one_by_one_lifting_conv_builds():
    # Its basis has a single element, which sends e2cnn's uint8 mask through masked_fill_ (bool masks only).
    e2cnn = import_e2cnn()
    gspace = e2cnn.gspaces.Rot2dOnR2(4)
    trivial = e2cnn.nn.FieldType(gspace, [gspace.trivial_repr])
    regular = e2cnn.nn.FieldType(gspace, [gspace.regular_repr])
    conv = e2cnn.nn.R2Conv(trivial, regular, 1)
    y = conv(e2cnn.nn.GeometricTensor(torch.randn(1, 1, 5, 5), trivial)).tensor
    assert torch.allclose(y, y[:, :1].expand(-1, 4, -1, -1))  # a 1x1 filter looks the same at every rotation


def test_shim_leaves_global_numpy_and_torch_alone():
    import_e2cnn()
    assert not hasattr(np, "float") and torch.uint8 is not torch.bool
    with pytest.raises(ValueError):
        np.array(1, copy=False)


def test_shim_is_idempotent():
    first = import_e2cnn()
    single_block = first.nn.modules.r2_conv.basisexpansion_singleblock

    def patched() -> tuple:
        return (first.kernels.utils.np, first.group.groups.o2group.np, single_block.np, single_block.torch,
                first.kernels.irreps_basis.R2FlipsSolution.__hash__)

    before = patched()
    assert import_e2cnn() is first
    assert patched() == before
    assert first.kernels.utils.np.array(3, copy=False) == 3  # patched once, not wrapped twice


def test_only_the_shim_imports_e2cnn():
    package = Path(equisweep.__file__).parent
    direct = re.compile(r"^\s*(import e2cnn|from e2cnn\b)", re.MULTILINE)
    offenders = [p.name for p in package.rglob("*.py") if p.name != "_e2cnn_compat.py" and direct.search(p.read_text())]
    assert offenders == []
