"""Cost of the families of relaxation: one training step (forward and backward of the cross-entropy plus the
method's terms, as ``EquivarianceClassifier.method_terms`` adds them) of each family against the same step of the
plain backbone it wraps, in the same run, at the sweeps' input size 29 and batch sizes.

Targets: ``average`` within |G| x 1.1 (it runs the backbone on the |G| turned copies), ``canonicalize`` within 1.5x
(the scoring net, twice: the forward's choice and the identity prior), ``augerino`` within 1.3x (one bilinear
rotation per image), the ``orbit`` penalty within 2.1x (one more forward and backward on the turned batch); the
``lie`` penalty (a forward-mode pass through the training forward) is reported without a target.
The backbone and the family run round-robin, one step each per round, so that a machine whose load drifts slows them
alike: a ratio is the median over rounds of the ratio within a round (``q1``-``q3`` its quartiles), ``backbone_ms``
the median backbone step (on |G| times the batch in the ``vs |G|B`` row). On a CPU the clock is the process's CPU
time on one thread (``--threads``), as in ``bench_relaxed``.
Run: ``python -m benchmarks.bench_families`` (a few minutes on a CPU with the defaults).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import device_line, interleaved_rounds, prepare, write_table
from equisweep.groups import P4
from equisweep.models import build_model
from equisweep.models.invariance import invariance_of
from equisweep.pipeline.train.eq_penalty import equivariance_penalty

SIZE, PENALTY = 29, 0.1
Terms = Callable[[nn.Module, Tensor, Tensor], Tensor | float]


def no_terms(net: nn.Module, x: Tensor, logits: Tensor) -> float:
    return 0.0


def wrapper_terms(net: nn.Module, x: Tensor, logits: Tensor) -> Tensor | float:
    """The invariance wrapper's own term of the loss (the identity prior, the range's regulariser)."""
    record = invariance_of(net)
    return 0.0 if record.loss is None else record.loss(net, x, net.options)


def penalty_terms(kind: str) -> Terms:
    def terms(net: nn.Module, x: Tensor, logits: Tensor) -> Tensor:
        return PENALTY * equivariance_penalty(kind, net, x, logits, P4, 0.0).mean()
    return terms


# case: (backbone group, family's build_model options, its loss terms, target ratio or None, the backbone's batch
# as a multiple of the family's). The "vs |G|B" row times the backbone on as many images as averaging feeds it, so
# that its ratio is the wrapper's own cost, apart from how the backbone's cost grows with the batch.
CASES: dict[str, tuple[str, dict, Terms, float | None, int]] = {
    "average p4cnn p4": ("p4", {"invariance": "average"}, wrapper_terms, P4.order * 1.1, 1),
    "  vs |G|B p4cnn": ("p4", {"invariance": "average"}, wrapper_terms, None, P4.order),
    "average plain z2": ("z2", {"invariance": "average"}, wrapper_terms, P4.order * 1.1, 1),
    "canonicalize z2": ("z2", {"invariance": "canonicalize"}, wrapper_terms, 1.5, 1),
    "augerino z2": ("z2", {"invariance": "augerino"}, wrapper_terms, 1.3, 1),
    "orbit penalty z2": ("z2", {}, penalty_terms("orbit"), 2.1, 1),
    "lie penalty z2": ("z2", {}, penalty_terms("lie"), None, 1),
}


def training_step(net: nn.Module, x: Tensor, y: Tensor, terms: Terms) -> Callable[[], None]:
    """One training step's forward and backward: cross-entropy plus ``terms``, as a callable to time."""
    def run() -> None:
        net.zero_grad(set_to_none=True)
        logits = net(x)
        (F.cross_entropy(logits, y) + terms(net, x, logits)).backward()
    return run


def _compare(case: str, batch: int, device: torch.device, repeats: int) -> dict:
    group, options, terms, target, multiple = CASES[case]
    x = torch.randn(batch * multiple, 1, SIZE, SIZE, device=device)
    y = torch.randint(10, (batch * multiple,), device=device)
    backbone = build_model("p4cnn", group=group).to(device).train()
    family = build_model("p4cnn", group=group, **options).to(device).train()
    rounds = interleaved_rounds({"backbone": training_step(backbone, x, y, no_terms),
                                 "family": training_step(family, x[:batch], y[:batch], terms)}, device, repeats)
    ratios = [r["family"] / r["backbone"] for r in rounds]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {"case": case, "batch": batch, "backbone_ms": statistics.median(r["backbone"] for r in rounds),
            "family/backbone": statistics.median(ratios), "q1-q3": f"{q1:.2f}-{q3:.2f}",
            "target": "-" if target is None else f"<= {target:.2f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device, clock = prepare(args)
    rows = [_compare(case, batch, device, args.repeats) for batch in args.batches for case in CASES]
    header = (f"{device_line(device)} clock={clock} p4cnn default width at {SIZE}x{SIZE}, train mode, one step of "
              f"cross-entropy + the method's terms (penalty weight {PENALTY}), fwd+bwd")
    columns = ["case", "batch", "backbone_ms", "family/backbone", "q1-q3", "target"]
    print(write_table("bench_families", header, rows, columns, [18, 5, 11, 15, 9, 7]))


if __name__ == "__main__":
    main()
