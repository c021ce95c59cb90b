"""Training images/s: the reference torchvision pipeline vs this project's trial loop, same images and model.

    python bench/epoch_throughput.py [--images 5000] [--rounds 3] [--precision bf16] [--no-channels-last]
                                     [--val-images 5000] [--eval-batch-size 250]

Reference: a torchvision-CIFAR10-style Dataset (uint8 array → PIL image → ToTensor → Normalize) in a
DataLoader, batch 128, SGD, the reference model with its `x.view`. Ours: `training.train_epochs`
(data as tensors on the device, whole-batch normalization). The two alternate, one epoch each per
round, in one process; the first round is warm-up and is not counted. Also printed: how fast ours
evaluates the validation split after its epoch (eval img/s). Needs CIFAR10_ROOT.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from training import TrialConfig, load_data, resolve_device, train_epochs
from training.config import DataConfig, TrainConfig


class ReferenceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1, self.fc2 = nn.Linear(64 * 8 * 8, 512), nn.Linear(512, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 64 * 8 * 8)
        return self.fc2(F.relu(self.fc1(x)))


class ReferenceDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: HWC uint8 → PIL → transform."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.data, self.targets = x.transpose(0, 2, 3, 1), y.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def reference_epoch(loader: DataLoader, model: nn.Module, opt: torch.optim.Optimizer, device) -> float:  # type: ignore[no-untyped-def]
    model.train()
    n, start = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=TrainConfig.channels_last)
    ap.add_argument("--val-images", type=int, default=5000, help="evaluated after each epoch of ours (eval img/s)")
    ap.add_argument("--eval-batch-size", type=int, default=TrainConfig.eval_batch_size)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    device = resolve_device(args.device)
    data_cfg = DataConfig(root=os.environ.get("CIFAR10_ROOT", "./data"), train_size=args.images, val_size=args.val_images)
    data = load_data(data_cfg, device)
    train = TrainConfig(epochs=1, precision=args.precision, channels_last=args.channels_last, device=str(device),
                        eval_batch_size=args.eval_batch_size)  # fmt: skip
    cfg = TrialConfig(data=data_cfg, train=train)
    ref_set = ReferenceDataset(data.train.x.cpu().numpy(), data.train.y.cpu().numpy())
    loader = DataLoader(ref_set, batch_size=128, shuffle=True)
    ref_model = ReferenceNet().to(device)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.01, momentum=0.9)

    ref, ours, evals = [], [], []
    for r in range(args.rounds + 1):
        a = reference_epoch(loader, ref_model, ref_opt, device)
        rec = next(iter(train_epochs(cfg, data)))
        b = rec["images_per_second"]
        e = len(data.val) / (rec["epoch_seconds"] - len(data.train) / b)  # the rest of the epoch is evaluation
        if r > 0:  # round 0 warms up both
            ref.append(a)
            ours.append(b)
            evals.append(e)
        print(f"round {r}{' (warm-up)' if r == 0 else ''}: reference {a:7.0f} img/s   ours {b:7.0f} img/s   "
              f"ours eval {e:7.0f} img/s")  # fmt: skip
    ref_m, ours_m = float(np.median(ref)), float(np.median(ours))
    print(
        f"device {device}, {args.images} images, precision {args.precision}, channels_last {args.channels_last}: "
        f"reference {ref_m:.0f} img/s, ours {ours_m:.0f} img/s, ratio {ours_m / ref_m:.2f}x (median of {args.rounds}); "
        f"ours eval {np.median(evals):.0f} img/s ({args.val_images} images, batch {args.eval_batch_size})"
    )


if __name__ == "__main__":
    main()
