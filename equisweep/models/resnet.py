"""Pre-activation ResNet-18/44 as in Edixhoven et al. (ICCV-W 2023), for z2, p4, p4m and e2cnn groups.

Not torchvision's layout: a 3x3 stride-1 stem, no max-pool, stages of width w·2^i with strides 1, 2, 2(, 2),
pre-activation basic blocks (He et al., ECCV 2016) whose 1x1 stride-2 shortcut (+BN) acts on the raw input.
Every stride-2 layer is a 3x3/2/1 conv or a 1x1/2/0 conv, both exact iff the size they see is odd: ResNet-18 is
exact at 225 and not at 224, ResNet-44 at 33 and not at 32.
"""

from __future__ import annotations

from torch import Tensor, nn

from equisweep.models.layers import LayerSet
from equisweep.models.subsampling import share_grid


class PreActBlock(nn.Module):
    """x -> BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> conv3x3, plus x or shortcut(x).

    in [B, C_in, (|G|,) H, W] -> out [B, C_out, (|G|,) H', W'], H' = (H - 1) // stride + 1.
    """

    def __init__(self, layers: LayerSet, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = layers.norm(cin)
        self.conv1 = layers.conv(cin, cout, 3, stride=stride, padding=1)
        self.bn2 = layers.norm(cout)
        self.conv2 = layers.conv(cout, cout, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(layers.conv(cin, cout, 1, stride=stride), layers.norm(cout))
            share_grid(self.shortcut[0], self.conv1)  # adaptive subsampling: the sum needs one grid

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu(self.bn1(x)))  # first: an adaptive shortcut samples the grid conv1 chose
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActResNet(nn.Module):
    """Image [B, C_in, N, N] -> logits [B, num_classes]."""

    def __init__(self, layers: LayerSet, blocks: tuple[int, ...], width: int, num_classes: int = 10,
                 in_channels: int = 1, head: str = "coset") -> None:
        super().__init__()
        self.group = layers.group
        self.stem = layers.lift(in_channels, width, 3, padding=1)
        stages, cin = [], width
        for i, count in enumerate(blocks):
            cout, stride = width * 2**i, 1 if i == 0 else 2
            stage = [PreActBlock(layers, cin if j == 0 else cout, cout, stride if j == 0 else 1)
                     for j in range(count)]
            stages.append(nn.Sequential(*stage))
            cin = cout
        self.layers = nn.Sequential(*stages)
        self.final = nn.Sequential(layers.norm(cin), nn.ReLU(inplace=True))
        self.head = layers.head(head, cin, num_classes, pool_group_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.final(self.layers(self.stem(x))))
