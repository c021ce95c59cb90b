"""The training loop of one trial: a generator of per-epoch records, knowing nothing of Optuna or MLflow.

Each record is a dict with exactly the keys of `RECORD_KEYS` (the sweep logs them to MLflow under
these names). A NaN/inf loss ends the trial at once: the loop yields the partial epoch's record
(train_loss non-finite) and raises `NonFiniteLoss`; an out-of-memory raises `OutOfMemory`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from training.config import ConfigError, TrainConfig, TrialConfig
from training.data import Dataset, Split, batches, load_data
from training.errors import NonFiniteLoss, OutOfMemory
from training.metrics import classification_metrics
from training.model import build_model
from training.optim import build_optimizer, build_scheduler, penalized_weights, penalty

RECORD_KEYS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_precision", "val_recall", "val_f1",
    "val_auc", "lr", "grad_norm", "grad_norm_max", "clip_fraction", "penalty", "epoch_seconds",
    "images_per_second",
)  # fmt: skip
FINITE_CHECK_EVERY = 10  # steps between loss checks: a NaN stays NaN in the running sum, so none is missed
NO_VAL = {k: math.nan for k in RECORD_KEYS if k.startswith("val_")}  # an epoch cut short is not evaluated

Record = dict[str, float]


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else must name a device this machine has."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"train.device={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count() > 0:
            raise ConfigError(f"train.device={name}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1}")
        if (device.type == "cuda" and not torch.cuda.is_available()) or (device.type == "mps" and not torch.backends.mps.is_available()):
            raise ConfigError(f"train.device={name}: no {device.type} device on this machine; use train.device=auto "
                              "(cuda, then mps, then cpu) or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


OnBatch = Callable[[int, int, int], None]  # (epoch, steps done, steps per epoch)


def train_epochs(cfg: TrialConfig, data: Dataset | None = None, on_batch: OnBatch | None = None) -> Iterator[Record]:
    """Train `cfg` and yield one record per epoch (epochs count from 1); `on_batch` reports progress."""
    cfg.validate()
    device = resolve_device(cfg.train.device)
    data = data if data is not None else load_data(cfg.data, device)
    try:
        yield from _train(cfg, data, device, on_batch)
    except torch.OutOfMemoryError as e:
        raise OutOfMemory(f"out of memory on {device}: {str(e).splitlines()[0]}") from None


def _train(cfg: TrialConfig, data: Dataset, device: torch.device, on_batch: OnBatch | None) -> Iterator[Record]:
    t = cfg.train
    steps_per_epoch = math.ceil(len(data.train) / t.batch_size)
    torch.manual_seed(t.seed)
    batch_rng = torch.Generator().manual_seed(t.seed)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model = build_model(cfg.model.name, len(data.classes)).to(device, memory_format=memory_format)
    forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if t.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    weights = penalized_weights(model)
    opt = build_optimizer(params, cfg.optimizer)
    sched = build_scheduler(opt, cfg.scheduler, t.epochs)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if t.precision == "bf16" else nullcontext()
    )

    for epoch in range(1, t.epochs + 1):
        start = time.perf_counter()
        lr = sched.get_last_lr()[0]
        model.train()
        loss_sum = torch.zeros((), device=device)
        pen_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        norms: list[torch.Tensor] = []
        seen = steps = 0
        failed = None
        for x, y in batches(data.train, t.batch_size, cfg.data, batch_rng, cfg.data.augment):
            x = x.contiguous(memory_format=memory_format)
            loss, pen, logits, norm = train_step(forward, opt, params, weights, x, y, t, autocast)
            steps += 1
            seen += len(y)
            loss_sum += loss * len(y)
            pen_sum += pen
            correct += (logits.argmax(1) == y).sum()
            norms.append(norm)
            if on_batch is not None:
                on_batch(epoch, steps, steps_per_epoch)
            if steps % FINITE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                failed = steps
                break
        if failed is None and not torch.isfinite(loss_sum):
            failed = steps
        train_seconds = time.perf_counter() - start
        norm_t = torch.stack(norms).float()
        record: Record = {
            "epoch": epoch,
            "train_loss": (loss_sum / seen).item(),
            "train_acc": (correct / seen).item(),
            "lr": lr,
            "grad_norm": norm_t.mean().item(),
            "grad_norm_max": norm_t.max().item(),
            "clip_fraction": (norm_t > t.clip_theta).float().mean().item() if t.clip_theta is not None else 0.0,
            "penalty": (pen_sum / steps).item(),
        }
        if failed is not None:
            record.update(NO_VAL)
        else:
            record.update(evaluate(forward, data.val, cfg, memory_format, autocast))
        record["epoch_seconds"] = time.perf_counter() - start
        record["images_per_second"] = seen / train_seconds
        yield {k: record[k] for k in RECORD_KEYS}
        if failed is not None:
            raise NonFiniteLoss(epoch, failed, record["train_loss"])
        sched.step()


def train_step(
    forward: Callable[[torch.Tensor], torch.Tensor],
    opt: torch.optim.Optimizer,
    params: list[torch.Tensor],
    weights: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    t: TrainConfig,
    autocast=nullcontext(),  # type: ignore[no-untyped-def]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SGD step on data loss + L1/L2 penalty, clipping the global L2 norm at θ.

    Returns (data loss, penalty, logits, gradient norm before clipping), all detached from the graph.
    """
    with autocast:
        logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
    pen = penalty(weights, t.l1, t.l2)
    opt.zero_grad(set_to_none=True)
    (loss + pen).backward()
    if t.clip_theta is not None:
        norm = nn.utils.clip_grad_norm_(params, t.clip_theta)  # returns the norm before clipping
    else:
        norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    opt.step()
    return loss.detach(), pen.detach(), logits.detach(), norm.detach()


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    split: Split,
    cfg: TrialConfig,
    memory_format: torch.memory_format = torch.contiguous_format,
    autocast=nullcontext(),  # type: ignore[no-untyped-def]
    prefix: str = "val_",
) -> Record:
    """Loss and classification metrics of the model on a whole split (eval mode, no augmentation)."""
    if isinstance(forward, nn.Module):
        forward.eval()
    return split_metrics(predict(forward, split, cfg, memory_format, autocast), split.y, prefix)


@torch.no_grad()
def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    split: Split,
    cfg: TrialConfig,
    memory_format: torch.memory_format = torch.contiguous_format,
    autocast=nullcontext(),  # type: ignore[no-untyped-def]
    batch_dim: int = 0,
) -> torch.Tensor:
    """The float32 logits of a whole split, in eval batches; `batch_dim` is 1 for a fused (K×B×C) forward."""
    logits = []
    for x, _ in batches(split, cfg.train.eval_batch_size, cfg.data):
        with autocast:
            logits.append(forward(x.contiguous(memory_format=memory_format)).float())
    return torch.cat(logits, dim=batch_dim)


def split_metrics(logits: torch.Tensor, y: torch.Tensor, prefix: str = "val_") -> Record:
    """Cross-entropy and classification metrics of one model's logits (N×C) against labels `y`."""
    loss = F.cross_entropy(logits, y).item()
    probs = torch.softmax(logits.double(), dim=1).cpu().numpy()
    return {f"{prefix}loss": loss, **classification_metrics(y.cpu().numpy(), probs, prefix)}


@dataclass
class FitResult:
    """Outcome of `fit`: `status` is 'completed' or 'nonfinite'; records holds every epoch yielded."""

    status: str
    records: list[Record] = field(default_factory=list)
    message: str = ""


def fit(
    cfg: TrialConfig,
    data: Dataset | None = None,
    on_epoch: Callable[[Record], None] | None = None,
    on_batch: OnBatch | None = None,
) -> FitResult:
    """Run a whole trial, calling `on_epoch` with each record; a non-finite loss ends it with that status."""
    result = FitResult("completed")
    try:
        for record in train_epochs(cfg, data, on_batch):
            result.records.append(record)
            if on_epoch is not None:
                on_epoch(record)
    except NonFiniteLoss as e:
        result.status, result.message = "nonfinite", str(e)
    return result


def summarize_record(r: Record) -> str:
    """One human line for an epoch's record."""
    return (
        f"epoch {int(r['epoch']):3d}  train_loss {r['train_loss']:.4f}  train_acc {r['train_acc']:.3f}  "
        f"val_loss {r['val_loss']:.4f}  val_acc {r['val_acc']:.3f}  lr {r['lr']:.3g}  "
        f"grad_norm {r['grad_norm']:.3g}  {r['images_per_second']:.0f} img/s"
    )


