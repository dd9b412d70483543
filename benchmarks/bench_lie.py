"""Cost of the Lie-derivative error: one ``lie_derivative`` pass (a forward-mode jvp through the network, softmax
included) against one plain forward, both in eval mode without gradients, for P4CNN (p4, 28) and ResNet-44 (p4, 33).

Target: the Lie-derivative pass within 3x of the forward.
The two run round-robin, one pass each per round, so that a machine whose load drifts slows them alike: a ratio is
the median over rounds of the ratio within a round, ``forward_ms`` the median forward time. On a CPU the clock is
the process's CPU time on one thread (``--threads``), as in ``bench_relaxed``: wall time on a shared machine
measures the other processes too.
Run: ``python -m benchmarks.bench_lie`` (about a minute on a CPU with the defaults).
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

from benchmarks.common import device_line, interleaved_rounds, prepare, timing_parser, write_table
from equisweep.exactness.lie import lie_derivative
from equisweep.models import build_model


def _compare(case: str, model: nn.Module, x: torch.Tensor, device: torch.device, repeats: int,
             warmup: int = 1) -> dict:
    model = model.to(device).eval()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    passes = {"forward": forward, "lie": lambda: lie_derivative(model, x)}
    rounds = interleaved_rounds(passes, device, repeats, warmup)
    return {"case": case, "forward_ms": statistics.median(r["forward"] for r in rounds),
            "lie_ms": statistics.median(r["lie"] for r in rounds),
            "lie/forward": statistics.median(r["lie"] / r["forward"] for r in rounds)}


def main() -> None:
    parser = timing_parser(__doc__, batch=32, repeats=11)
    args = parser.parse_args()
    device, clock = prepare(args)
    rows = []
    for name, size in (("p4cnn", 28), ("resnet44", 33)):
        x = torch.randn(args.batch, 1, size, size, device=device)
        rows.append(_compare(f"{name} p4 {size}x{size}", build_model(name, group="p4"), x, device, args.repeats))
    header = f"{device_line(device)} clock={clock} batch={args.batch} default width; eval, no grad"
    print(write_table("bench_lie", header, rows, ["case", "forward_ms", "lie_ms", "lie/forward"], [18, 10, 10, 11]))


if __name__ == "__main__":
    main()
