"""Cost of adaptive subsampling: forward+backward (train mode) of P4CNN and ResNet-44 with ``subsampling="adaptive"``
against ``"stride"``, in the same run, at sizes where stride 2 is not exact (there adaptive does its full work:
every stride-2 layer computed at stride 1, then a polyphase choice).

Targets: P4CNN within 1.15x (one 2x2 max-pool computed at stride 1), ResNet-44 within 1.8x (two stride-2 convs
and their shortcuts computed at stride 1).
Timing as ``bench_relaxed``: the two variants run round-robin, one step each per round; a ratio is the median over
rounds of the ratio within a round; on a CPU the clock is the process's CPU time on ``--threads`` threads.
Run: ``python -m benchmarks.bench_subsampling`` (about a minute on a CPU with the defaults).
"""

from __future__ import annotations

import statistics

import torch

from benchmarks.common import device_line, fwd_bwd, interleaved_rounds, prepare, timing_parser, write_table
from equisweep.models import build_model

CASES = (("p4cnn", "p4", 29), ("p4cnn", "p4m", 29), ("resnet44", "p4", 32), ("resnet44", "p4m", 32))


def _compare(name: str, group: str, size: int, batch: int, device: torch.device, repeats: int,
             warmup: int = 1) -> dict:
    x = torch.randn(batch, 1, size, size, device=device)
    steps = {kind: fwd_bwd(build_model(name, group=group, subsampling=kind).to(device).train(), x)
             for kind in ("stride", "adaptive")}
    rounds = interleaved_rounds(steps, device, repeats, warmup)
    return {"case": f"{name} {group} {size}x{size}", "stride_ms": statistics.median(r["stride"] for r in rounds),
            "adaptive/stride": statistics.median(r["adaptive"] / r["stride"] for r in rounds)}


def main() -> None:
    parser = timing_parser(__doc__, batch=8, repeats=7)
    args = parser.parse_args()
    device, clock = prepare(args)
    rows = [_compare(name, group, size, args.batch, device, args.repeats) for name, group, size in CASES]
    header = f"{device_line(device)} clock={clock} batch={args.batch} default width; fwd+bwd, train mode"
    print(write_table("bench_subsampling", header, rows, ["case", "stride_ms", "adaptive/stride"], [20, 10, 16]))


if __name__ == "__main__":
    main()
