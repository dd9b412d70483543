"""Data path speed: the device-resident batches with per-example ``uniform`` rotations, against a torchvision
DataLoader that rotates each PIL image, and against how fast the p4cnn consumes images when training.

Target: the data path is at least 5x faster than the model, so training is never input-bound.
Run: ``python -m benchmarks.bench_data``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchmarks.common import device_line, write_table
from equisweep.datamodules import build_datamodule
from equisweep.models import build_model


class _PilRotated(Dataset):
    """The usual per-sample pipeline: uint8 tensor -> PIL -> random rotation -> float tensor -> normalise."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images.cpu(), labels.cpu()
        self.transform = v2.Compose([v2.ToPILImage(), v2.RandomRotation(360), v2.ToImage(),
                                     v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.1307], [0.3081])])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def _images_per_second(batches, count: int, device: torch.device) -> float:
    """Images per second over the whole iterable (one warm-up batch first, synchronised at the end)."""
    iterator = iter(batches)
    next(iterator)
    seen, start = 0, time.perf_counter()
    for x in iterator:
        seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start) if seen else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dm = build_datamodule("mnist5k", 28, train_symmetry="uniform", batch_size=args.batch)
    dm.setup()
    images, labels = (t.to(device) for t in dm.splits["train"])
    dm.splits["train"] = (images, labels)

    device_path = (dm.prepare_batch(x, training=True) for x, _ in dm.train_dataloader())
    ours = _images_per_second(device_path, len(labels), device)

    loader = DataLoader(_PilRotated(images, labels), batch_size=args.batch, num_workers=args.workers)
    theirs = _images_per_second((x.to(device) for x, _ in loader), len(labels), device)

    model = build_model("p4cnn", "p4").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = dm.prepare_batch(images[:args.batch], training=True)

    def steps():
        for _ in range(12):
            optimizer.zero_grad()
            F.cross_entropy(model(x), labels[:args.batch]).backward()
            optimizer.step()
            yield x
    consumed = _images_per_second(steps(), 12 * args.batch, device)

    rows = [{"case": "device batches, uniform", "images_per_s": ours, "ratio": 1.0},
            {"case": "DataLoader + PIL rotation", "images_per_s": theirs, "ratio": ours / theirs},
            {"case": "p4cnn p4 training step", "images_per_s": consumed, "ratio": ours / consumed}]
    header = (f"{device_line(device)} batch={args.batch} workers={args.workers} mnist5k 28x28 "
              "(ratio: device path / case)")
    print(write_table("bench_data", header, rows, ["case", "images_per_s", "ratio"], [28, 13, 8]))


if __name__ == "__main__":
    main()
