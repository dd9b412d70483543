"""Cost of relaxed equivariance: forward+backward (train mode) of each relaxed layer and of whole P4CNN and
ResNet-44 models against the exact ones, in the same run.

Targets: ``relaxed`` (2 banks) and ``rpp`` within 1.3x of exact, ``partial`` within 1.2x.
The variants of a case run round-robin, one step each per round, so that a machine whose load drifts slows
them alike: a ratio is the median over rounds of the ratio within a round, ``exact_ms`` the median exact time.
On a CPU the clock is the process's CPU time on one thread (``--threads``), not wall time: on a shared machine
other processes stretch wall time, and idle threads spinning at a barrier inflate CPU time, by far more than the
few percent this measures.
Run: ``python -m benchmarks.bench_relaxed`` (under a minute on a CPU with the defaults).
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

from benchmarks.common import device_line, fwd_bwd, interleaved_rounds, prepare, timing_parser, write_table
from equisweep.groups import get_group
from equisweep.models import GroupConv, LiftingConv, build_model
from equisweep.models.partial_gconv import PartialGroupConv, PartialLiftingConv
from equisweep.models.relaxed_gconv import RelaxedGroupConv, RelaxedLiftingConv
from equisweep.models.rpp_gconv import RPPGroupConv, RPPLiftingConv

METHODS = ("relaxed", "rpp", "partial")
LAYERS = {"none": (LiftingConv, GroupConv), "relaxed": (RelaxedLiftingConv, RelaxedGroupConv),
          "rpp": (RPPLiftingConv, RPPGroupConv), "partial": (PartialLiftingConv, PartialGroupConv)}



def _compare(case: str, modules: dict[str, nn.Module], x: torch.Tensor, device: torch.device,
             repeats: int, warmup: int = 1) -> dict:
    steps = {method: fwd_bwd(module.to(device).train(), x) for method, module in modules.items()}
    rounds = interleaved_rounds(steps, device, repeats, warmup)
    row = {"case": case, "exact_ms": statistics.median(r["none"] for r in rounds)}
    row.update({f"{method}/exact": statistics.median(r[method] / r["none"] for r in rounds) for method in METHODS})
    return row


def main() -> None:
    parser = timing_parser(__doc__, batch=16, repeats=11)
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    args = parser.parse_args()
    device, clock = prepare(args)
    rows, c = [], args.channels
    for group in ("p4", "p4m"):
        order = get_group(group).order
        image = torch.randn(args.batch, c, 28, 28, device=device)
        fmap = torch.randn(args.batch, c, order, 28, 28, device=device)
        for which, x in (("lift", image), ("gconv", fmap)):
            modules = {method: types[which == "gconv"](c, c, 3, group, padding=1) for method, types in LAYERS.items()}
            rows.append(_compare(f"{which} {group} 28x28", modules, x, device, args.repeats))
    for name, size in (("p4cnn", 28), ("resnet44", 33)):
        x = torch.randn(args.model_batch, 1, size, size, device=device)
        modules = {method: build_model(name, group="p4", relaxation=method) for method in LAYERS}
        rows.append(_compare(f"{name} p4 {size}x{size}", modules, x, device, args.repeats))
    header = (f"{device_line(device)} clock={clock} layers: batch={args.batch} channels={c} kernel=3; models: "
              f"batch={args.model_batch} default width; fwd+bwd, relaxed with 2 banks")
    columns = ["case", "exact_ms", *(f"{method}/exact" for method in METHODS)]
    print(write_table("bench_relaxed", header, rows, columns, [18, 10, 15, 11, 15]))


if __name__ == "__main__":
    main()
