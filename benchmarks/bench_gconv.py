"""Group conv speed: our p4/p4m GroupConv against (a) one plain nn.Conv2d of the same expanded shape and
(b) e2cnn's R2Conv between the same regular fields, forward+backward in train mode and forward in eval mode.

Target: within 1.15x of (a) and faster than (b) in train mode. Run: ``python benchmarks/bench_gconv.py``.
"""

from __future__ import annotations

import argparse

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


def _step(module: nn.Module, x, train: bool):
    def run():
        if train:
            module.zero_grad(set_to_none=True)
            out = module(x)
            (out.tensor if hasattr(out, "tensor") else out).sum().backward()
        else:
            with torch.no_grad():
                module(x)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 56])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    for group_name in ("p4", "p4m"):
        order, c = get_group(group_name).order, args.channels
        ours = GroupConv(c, c, 3, group_name, padding=1).to(device)
        plain = nn.Conv2d(c * order, c * order, 3, padding=1).to(device)
        r2conv, field = _r2conv(group_name, c)
        r2conv = r2conv.to(device)
        for n in args.sizes:
            x5 = torch.randn(args.batch, c, order, n, n, device=device)
            x4 = x5.flatten(1, 2)
            for mode in ("train", "eval"):
                train = mode == "train"
                for module in (ours, plain, r2conv):
                    module.train(train)
                base = median_ms(_step(plain, x4, train), device, args.repeats)
                mine = median_ms(_step(ours, x5, train), device, args.repeats)
                e2 = median_ms(_step(r2conv, geometric(x4, field), train), device, args.repeats)
                rows.append({"case": f"{group_name} {n}x{n} {mode}", "conv2d_ms": base, "ours_ms": mine,
                             "e2cnn_ms": e2, "ours/conv2d": mine / base, "ours/e2cnn": mine / e2})
    header = f"{device_line(device)} batch={args.batch} channels={args.channels}x|G| kernel=3"
    columns = ["case", "conv2d_ms", "ours_ms", "e2cnn_ms", "ours/conv2d", "ours/e2cnn"]
    print(write_table("bench_gconv", header, rows, columns, [18, 10, 10, 10, 11, 10]))


if __name__ == "__main__":
    main()
