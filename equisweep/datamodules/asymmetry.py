"""How far a dataset, as a training regime shows it, is from invariant under a group: the accuracy of a small
classifier that tells an image ``x`` from the same image transformed, ``g·x``, with ``g`` drawn uniformly from the
group's non-identity elements (Lawrence, Hofgard et al., "To Augment or Not to Augment? Diagnosing Distributional
Symmetry Breaking", 2025, arXiv 2510.01349).

If the images are distributed G-invariantly, ``x`` and ``g·x`` are equally likely and no classifier beats 0.5 on
held-out images; the further above 0.5, the more the data has a preferred orientation (upright digits: high; the
same digits under ``c4`` training, which turns them by random quarter turns first: 0.5 by construction). It
measures the *input* distribution only: a label that breaks the symmetry (``mnist6-180``) is the label action's
business (``label_action.py``).

The images come from the source's training split exactly as training draws them (``EquiDataModule.prepare_batch``:
normalised, then the regime applied); each one is transformed with probability 1/2 and labelled by whether it was.
The classifier, a plain three-layer CNN, trains on the training split and is scored once on the validation and test
splits together, one independent example per image, so the count of correct answers is binomial and the 95 %
interval is Wilson's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from scipy.stats import binomtest
from torch import Tensor, nn

from equisweep.datamodules.datamodule import build_datamodule
from equisweep.datamodules.sources import SOURCES, check_dataset
from equisweep.errors import UserError
from equisweep.groups import Group, get_group

STEPS = 300  # enough for upright mnist5k to reach its plateau (0.97-0.98 at 300 steps, 0.91-0.96 at 100; seeds 0-2)
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Asymmetry:
    """The measured accuracy of telling ``x`` from ``g·x`` on ``n`` held-out images, and its 95 % interval."""

    dataset: str
    group: str
    train_symmetry: str
    accuracy: float
    low: float
    high: float
    n: int
    seed: int
    steps: int

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.dataset} under {self.train_symmetry} training, {self.group}: x told from g·x with accuracy "
                f"{self.accuracy:.3f} [{self.low:.3f}, {self.high:.3f}] (95 % Wilson, {self.n} held-out images; "
                "0.5 = invariant data)")


def measure_asymmetry(dataset: str, group: str = "p4", train_symmetry: str = "none", seed: int = 0,
                      steps: int = STEPS, data_dir: str = "data", input_size: int | None = None,
                      download: bool = False) -> Asymmetry:
    """Train the x-versus-g·x classifier on ``dataset``'s training images drawn under ``train_symmetry`` for
    ``steps`` steps (everything seeded by ``seed``) and score it on the held-out images (module docstring); a dataset
    missing from ``data_dir`` is downloaded there if ``download``."""
    transforms = _transforming_group(group)
    size = input_size or SOURCES[check_dataset(dataset)].native_size
    if size is None:
        raise UserError(f"input_size: {dataset} holds images of many sizes; give --input-size, e.g. 64")
    datamodule = build_datamodule(dataset, size, train_symmetry, BATCH_SIZE, data_dir, seed, num_workers=0,
                                  download=download)
    datamodule.prepare_data()
    datamodule.setup()
    draws = torch.Generator().manual_seed(seed + 3)  # the regime, the coin and the element of every example
    with torch.random.fork_rng(devices=[]):  # the classifier's initial weights, without moving the global stream
        torch.manual_seed(seed)
        classifier = _classifier(datamodule.in_channels)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=LEARNING_RATE)
    step = 0
    while step < steps:
        for images, _ in datamodule.train_dataloader():
            x, transformed = _examples(datamodule.prepare_batch(images, True, draws), transforms, draws)
            loss = nn.functional.cross_entropy(classifier(x), transformed)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    correct, n = 0, 0
    classifier.eval()
    with torch.no_grad():
        for loader in (datamodule.val_dataloader(), datamodule.test_dataloader()):
            for images, _ in loader:
                x, transformed = _examples(datamodule.prepare_batch(images, True, draws), transforms, draws)
                correct += int((classifier(x).argmax(1) == transformed).sum())
                n += len(transformed)
    interval = binomtest(correct, n).proportion_ci(CONFIDENCE, method="wilson")
    return Asymmetry(dataset, transforms.name, str(datamodule.regime), correct / n, float(interval.low),
                     float(interval.high), n, seed, steps)


def _transforming_group(name: str) -> Group:
    """The group ``name``, if it has a non-identity element and all its elements act exactly on the pixel grid."""
    group = get_group(name)
    if group.order == 1 or not group.acts_exactly_on_grid:
        raise UserError(f"group: {name!r} has no non-identity element that maps the pixel grid onto itself; "
                        "use p4 or p4m")
    return group


def _examples(x: Tensor, group: Group, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Each image of ``x``, transformed with probability 1/2 by a uniform non-identity element of ``group``, and a
    label saying whether it was (1) or not (0)."""
    transformed = torch.rand(len(x), generator=generator) < 0.5
    element = torch.randint(1, group.order, (len(x),), generator=generator)
    out = x.clone()
    for index, a in enumerate(group.elements[1:], start=1):
        chosen = (transformed & (element == index)).nonzero().squeeze(1)
        out[chosen] = group.act_on_image(a, x[chosen])
    return out, transformed.long()


def _classifier(channels: int) -> nn.Module:
    """A small plain CNN whose layout is not tied to any group: it can see every orientation the data has."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(32 * 16, 2),
    )
