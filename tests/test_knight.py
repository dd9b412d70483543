"""The paper's knight experiment (shared/paper.md §5): an approximate P4 net can learn to tell an image from its
own 90-degree rotation; an exact one cannot, whatever its weights."""

import math

import torch
from torch import nn

from equisweep.models import ClassifierHead, LiftingConv


def _glyph(n: int) -> torch.Tensor:
    """An asymmetric 'F'-like glyph, drawn once at 32x32 and zero-padded to n."""
    img = torch.zeros(32, 32)
    img[6:27, 9:13] = 1.0  # stem
    img[6:10, 13:24] = 1.0  # top bar
    img[15:18, 13:21] = 0.6  # middle bar
    img[22:25, 3:9] = 0.3  # foot
    return nn.functional.pad(img, (0, n - 32, 0, n - 32))


def _train(n: int, steps: int = 300) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)
    x = _glyph(n)
    batch = torch.stack([x, torch.rot90(x, 1, (-2, -1))]).unsqueeze(1)  # [2, 1, n, n]
    labels = torch.tensor([0, 1])
    net = nn.Sequential(LiftingConv(1, 4, 3, "p4", stride=2, padding=1),
                        ClassifierHead("coset", 4, 4, 2, pool_group_first=False))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(batch), labels)
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = net(batch)
    return float(nn.functional.cross_entropy(logits, labels)), logits


def test_approximate_net_learns_to_break_symmetry_at_32():
    loss, logits = _train(32)
    assert loss < 0.3 * math.log(2)
    assert logits.argmax(1).tolist() == [0, 1]


def test_exact_net_cannot_at_33():
    loss, logits = _train(33)
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
    assert loss >= math.log(2) - 1e-5
