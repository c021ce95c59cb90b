"""Trial-epochs per second: K trials fused into one model (training.fused) vs the same K run one after another.

    python bench/fused_trials.py [--images 5000] [--ks 1,2,4,8,16] [--epochs 2] [--optimizer sgd|adam] [--repeat 3]

For each K, the same K trials (lr spread log-uniformly, everything else shared, so they can share a
pack) run on the device `training.resolve_device("auto")` finds: one after another with
`training.train_epochs`, and fused with `training.fused.train_epochs_fused`. Both include each
epoch's validation pass, as in a sweep. trial-epochs/s = K·epochs / wall seconds; speedup = fused /
serial; medians of `--repeat` alternating runs. One untimed serial trial and one untimed fused pack
warm the device up first. Needs CIFAR10_ROOT (and SWEEPS_CACHE_DIR for the decoded cache).

On a CPU fusion is slower than serial (the per-member work is the same and a CPU was already busy);
this is why `sweep.pack` defaults to 1 and is refused on a CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from training import TrialConfig, load_data, resolve_device, train_epochs
from training.config import DataConfig, OptimizerConfig, TrainConfig
from training.fused import train_epochs_fused


def trials(k: int, args: argparse.Namespace, data_cfg: DataConfig, device: torch.device) -> list[TrialConfig]:
    low, high = (1e-3, 1e-1) if args.optimizer == "sgd" else (1e-4, 3e-3)
    lrs = [low * (high / low) ** (i / max(1, k - 1)) for i in range(k)]
    train = dict(epochs=args.epochs, batch_size=args.batch_size, precision=args.precision,
                 channels_last=args.channels_last, device=str(device))  # fmt: skip
    return [TrialConfig(data=data_cfg, optimizer=OptimizerConfig(args.optimizer, lr=lr), train=TrainConfig(**train)) for lr in lrs]


def timed(fn, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def serial(cfgs: list[TrialConfig], data) -> None:  # type: ignore[no-untyped-def]
    for cfg in cfgs:
        for _ in train_epochs(cfg, data):
            pass


def fused(cfgs: list[TrialConfig], data) -> None:  # type: ignore[no-untyped-def]
    for _ in train_epochs_fused(cfgs, data):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000, help="training images per trial-epoch")
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--ks", default="1,2,4,8,16")
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=TrainConfig.channels_last)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=1, help="alternating serial/fused runs per K; the median is shown")
    args = ap.parse_args()

    device = resolve_device(args.device)
    data_cfg = DataConfig(
        root=os.environ.get("CIFAR10_ROOT", "./data"), cache_dir=os.environ.get("SWEEPS_CACHE_DIR", "~/.sweeps/cache"),
        train_size=args.images, val_size=args.val_images,
    )  # fmt: skip
    data = load_data(data_cfg, device)
    cpu = f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(f"device {device} ({name}), torch {torch.__version__}; {args.images} train / {args.val_images} val images, "
          f"{args.epochs} epochs, batch {args.batch_size}, {args.optimizer}, {args.precision}"
          f", {'channels_last' if args.channels_last else 'NCHW'}")  # fmt: skip

    warm = trials(2, args, data_cfg, device)
    timed(lambda: serial(warm[:1], data), device)
    timed(lambda: fused(warm, data), device)

    print(f"{'K':>3}  {'serial trial-ep/s':>17}  {'fused trial-ep/s':>16}  {'speedup':>7}  {'serial s':>8}  {'fused s':>7}"
          + ("  fused peak GiB" if device.type == "cuda" else ""))  # fmt: skip
    for k in (int(v) for v in args.ks.split(",")):
        cfgs = trials(k, args, data_cfg, device)
        serial_s, fused_s = [], []
        for _ in range(args.repeat):  # alternate, so a busy neighbour slows both alike
            serial_s.append(timed(lambda: serial(cfgs, data), device))
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            fused_s.append(timed(lambda: fused(cfgs, data), device))
        t_serial, t_fused = statistics.median(serial_s), statistics.median(fused_s)
        n = k * args.epochs
        peak = f"  {torch.cuda.max_memory_allocated(device) / 2**30:14.2f}" if device.type == "cuda" else ""
        print(f"{k:3d}  {n / t_serial:17.2f}  {n / t_fused:16.2f}  {t_serial / t_fused:6.2f}x  {t_serial:8.1f}  {t_fused:7.1f}{peak}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
