"""Group conv speed: our p4/p4m GroupConv against (a) one plain nn.Conv2d of the same expanded shape and
(b) e2cnn's R2Conv between the same regular fields, forward+backward in train mode and forward in eval mode, in
fp32 and under bf16 autocast (``--dtypes``). Column (b) is left out where e2cnn is not installed.

Target: within 1.15x of (a) and faster than (b) in train mode. Run: ``python -m benchmarks.bench_gconv``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools

import torch
from torch import nn

from benchmarks.common import device_line, median_ms, write_table
from equisweep.groups import get_group
from equisweep.models import GroupConv
from equisweep.models._e2cnn_compat import import_e2cnn


def _r2conv(group_name: str, channels: int):
    e2cnn = import_e2cnn()
    group = get_group(group_name)
    gspace = (e2cnn.gspaces.FlipRot2dOnR2(group.rotations) if group.mirrors
              else e2cnn.gspaces.Rot2dOnR2(group.rotations))
    field = e2cnn.nn.FieldType(gspace, [gspace.regular_repr] * channels)
    return e2cnn.nn.R2Conv(field, field, 3, padding=1), field


def geometric(x: torch.Tensor, field):
    return import_e2cnn().nn.GeometricTensor(x, field)


def _e2cnn_available() -> bool:
    try:
        import_e2cnn()
    except ImportError:
        return False
    return True


def _step(module: nn.Module, x, train: bool, dtype: str):
    def run():
        with _autocast(x, dtype):
            _pass(module, x, train)
    return run


def _autocast(x, dtype: str):
    """bf16: the convs under autocast, as ``precision: bf16-mixed`` trains; fp32: as they are."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    tensor = x.tensor if hasattr(x, "tensor") else x
    return torch.autocast(tensor.device.type, dtype=torch.bfloat16)


def _pass(module: nn.Module, x, train: bool) -> None:
    if train:
        module.zero_grad(set_to_none=True)
        out = module(x)
        (out.tensor if hasattr(out, "tensor") else out).float().sum().backward()
    else:
        with torch.no_grad():
            module(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 56])
    parser.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    with_e2cnn = _e2cnn_available()
    rows = []
    for group_name in ("p4", "p4m"):
        order, c = get_group(group_name).order, args.channels
        ours = GroupConv(c, c, 3, group_name, padding=1).to(device)
        plain = nn.Conv2d(c * order, c * order, 3, padding=1).to(device)
        r2conv, field = _r2conv(group_name, c) if with_e2cnn else (None, None)
        for n, dtype, mode in itertools.product(args.sizes, args.dtypes, ("train", "eval")):
            x5 = torch.randn(args.batch, c, order, n, n, device=device)
            x4 = x5.flatten(1, 2)
            train = mode == "train"
            base = median_ms(_step(plain.train(train), x4, train, dtype), device, args.repeats)
            mine = median_ms(_step(ours.train(train), x5, train, dtype), device, args.repeats)
            row = {"case": f"{group_name} {n}x{n} {dtype} {mode}", "conv2d_ms": base, "ours_ms": mine,
                   "ours/conv2d": mine / base}
            if r2conv is not None:
                e2 = median_ms(_step(r2conv.to(device).train(train), geometric(x4, field), train, dtype), device,
                               args.repeats)
                row |= {"e2cnn_ms": e2, "ours/e2cnn": mine / e2}
            rows.append(row)
    header = (f"{device_line(device)} batch={args.batch} channels={args.channels}x|G| kernel=3"
              f"{'' if with_e2cnn else ' (e2cnn not installed: no R2Conv column)'}")
    widths = {"case": 24, "conv2d_ms": 10, "ours_ms": 10, "e2cnn_ms": 10, "ours/conv2d": 11, "ours/e2cnn": 10}
    columns = [c for c in widths if c in rows[0]]
    print(write_table("bench_gconv", header, rows, columns, [widths[c] for c in columns]))

if __name__ == "__main__":
    main()
