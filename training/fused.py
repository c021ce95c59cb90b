"""Fused trials: K reference ConvNets trained as one program on the same batches (HFTA-style fusion).

A small ConvNet leaves a GPU mostly idle; K trials that differ only in their optimizer settings can
share every batch, so they are trained as one wider model (HFTA, MLSys'21):

    conv 3→32     one convolution with K·32 output channels (the input batch is shared: no repeat)
    conv 32→64    one grouped convolution, groups=K (member i sees only its own 32 channels; on a CPU,
                  member by member: see `_grouped_conv`)
    fc, fc        batched matmuls (torch.baddbmm) over a leading member dimension (on a CPU,
                  where fusion only runs to be checked, member by member: see BatchedLinear)
    optimizer     torch.optim's SGD / Adam / AdamW update written once over (K, ...) tensors,
                  with each member's lr, schedule, momentum, betas, weight decay as (K,) tensors

Every parameter is stored as (K, *shape of the same parameter in `ConvNet`), so member i's slice
*is* a ConvNet's parameter. Member i starts from `build_model` after `torch.manual_seed(train.seed)`,
like the plain loop, and sees the same batches, so each member reproduces the trial run alone with
`train_epochs`: on a CPU bit for bit in its weights (every kernel and tensor expression is chosen to
round as the plain one does; the recorded sums differ in the last bit), checked to 1e-4 relative
over 2 epochs by tests/test_fused.py. On a GPU, cuDNN's grouped and plain convolutions may round
differently, and a sensitive trial (Adam, near-zero gradients) then drifts as it would under any
kernel change (channels_last, another GPU).

Per member, and never across members: the loss (cross-entropy of that member's logits; the members'
losses are summed for one backward, which leaves each gradient untouched), the L1/L2 penalty over its
own weights, clipping at its own θ on its own global gradient norm, and its optimizer state. A NaN
therefore stays in its member. A member whose loss goes non-finite is dropped from the pack at the
loop's own check points (every FINITE_CHECK_EVERY steps and at the epoch's end), exactly where
`train_epochs` would stop, and the caller may drop (prune) members between epochs; dropping compacts
every tensor, so the rest run as a smaller pack.

    pack = train_epochs_fused(cfgs, data)     # cfgs: list[TrialConfig] that share their data order
    for records in pack:                      # one list per epoch, aligned with cfgs
        for i, r in enumerate(records):       # r: a Record (keys RECORD_KEYS), or None once i left
            if r is not None and prune(r):
                pack.remove(i)
    pack.status[i]  # 'running' | 'completed' | 'nonfinite' | 'removed';  pack.errors[i]: NonFiniteLoss

Members must share what decides the batches and the program: data config, model, train.seed,
batch_size, epochs, device, precision, channels_last, compile, eval_batch_size and the optimizer's
family (SGD, or Adam/AdamW); `pack_key` is that tuple and `ConfigError` names the first difference.
Fusion pays on a GPU only: on a CPU it is slower than running the trials one after another
(bench/fused_trials.py), so the sweep never fuses there.

Timing fields: `epoch_seconds` is the pack's wall time for the epoch (every member waited that
long) and `images_per_second` counts the member's own images, so both read as "this trial took".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from training.config import ConfigError, TrialConfig
from training.data import Dataset, Split, batches, load_data
from training.errors import NonFiniteLoss, OutOfMemory
from training.loop import (
    FINITE_CHECK_EVERY,
    NO_VAL,
    RECORD_KEYS,
    FitResult,
    OnBatch,
    Record,
    predict,
    resolve_device,
    split_metrics,
)
from training.model import build_model
from training.optim import build_optimizer, build_scheduler

FUSABLE_MODELS = ("convnet", "convnet_bn")
# The ConvNet's parameters by name, in the order the forward pass uses them.
CONVS = ("features.0.0", "features.1.0")
NORMS = ("features.0.1", "features.1.1")  # BatchNorm2d of convnet_bn
LINEARS = ("classifier.1", "classifier.3")
CLIP_EPS = 1e-6  # clip_grad_norm_'s θ / (norm + 1e-6)

# ----------------------------------------------------------------------------- which trials can share a pack

SHARED_KEYS = (
    "data", "model.name", "train.seed", "train.batch_size", "train.epochs", "train.device", "train.precision",
    "train.channels_last", "train.compile", "train.eval_batch_size", "optimizer.family",
)  # fmt: skip


def optimizer_family(name: str) -> str:
    """Adam and AdamW share one update (their weight decay differs per member); SGD has its own."""
    return "adam" if name in ("adam", "adamw") else name


def pack_key(cfg: TrialConfig) -> tuple:
    """What members of one pack must share (the values of SHARED_KEYS): group trials by it."""
    return tuple(_shared_value(cfg, key) for key in SHARED_KEYS)


def _shared_value(cfg: TrialConfig, key: str) -> object:
    if key == "data":
        return repr(cfg.data)
    if key == "optimizer.family":
        return optimizer_family(cfg.optimizer.name)
    group, name = key.split(".")
    return getattr(getattr(cfg, group), name)


def check_pack(cfgs: list[TrialConfig]) -> None:
    """Raise ConfigError when `cfgs` cannot be trained as one pack."""
    if not cfgs:
        raise ConfigError("a fused pack needs at least one trial")
    for i, cfg in enumerate(cfgs):
        cfg.validate()
        if cfg.model.name not in FUSABLE_MODELS:
            raise ConfigError(
                f"member {i}: model.name={cfg.model.name!r} cannot be fused; fusable: {', '.join(FUSABLE_MODELS)}"
            )
        for key in SHARED_KEYS:
            a, b = _shared_value(cfgs[0], key), _shared_value(cfg, key)
            if a != b:
                raise ConfigError(
                    f"fused trials must share {key} (their batches and program are shared): member 0 has {a}, "
                    f"member {i} has {b}; train them in separate packs (group by training.fused.pack_key)"
                )


# ----------------------------------------------------------------------------- members: per-trial settings


@dataclass
class Member:
    """One trial's settings as plain floats, read from the torch optimizer and scheduler the plain loop builds."""

    cfg: TrialConfig
    lrs: list[float]  # per epoch, from the trial's own lr_scheduler
    weight_decay: float
    momentum: float = 0.0  # sgd
    nesterov: bool = False  # sgd
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float = 1e-8  # adam
    decoupled: bool = False  # adamw: decay the weights, not the gradient

    @classmethod
    def from_config(cls, cfg: TrialConfig) -> Member:
        """Build the trial's optimizer on a dummy parameter and step its scheduler through every epoch.

        The same `build_optimizer` / `build_scheduler` as the plain loop, so defaults (eps, dampening)
        and schedule semantics cannot drift; an invalid combination (nesterov without momentum) raises
        here, for this trial alone, as it would when the trial runs alone.
        """
        dummy = torch.zeros(1, requires_grad=True)
        opt = build_optimizer([dummy], cfg.optimizer)
        sched = build_scheduler(opt, cfg.scheduler, cfg.train.epochs)
        lrs = []
        for _ in range(cfg.train.epochs):
            lrs.append(float(sched.get_last_lr()[0]))
            opt.step()  # no gradient: changes nothing, but the scheduler expects a step before its own
            sched.step()
        g = opt.param_groups[0]
        if g.get("maximize") or g.get("amsgrad") or g.get("dampening", 0) != 0:
            raise ConfigError("fused trials implement torch.optim without maximize, amsgrad or dampening")
        if isinstance(opt, torch.optim.SGD):
            return cls(cfg, lrs, g["weight_decay"], momentum=g["momentum"], nesterov=g["nesterov"])
        if isinstance(opt, torch.optim.Adam):  # AdamW is an Adam with decoupled weight decay
            decoupled = bool(g.get("decoupled_weight_decay", isinstance(opt, torch.optim.AdamW)))
            beta1, beta2 = g["betas"]
            return cls(cfg, lrs, g["weight_decay"], beta1=beta1, beta2=beta2, eps=g["eps"], decoupled=decoupled)
        raise ConfigError(f"optimizer.name={cfg.optimizer.name!r} cannot be fused")  # pragma: no cover


# ----------------------------------------------------------------------------- the fused model


class FusedConvNet:
    """K ConvNets (convnet or convnet_bn) as one: parameters (K, *ConvNet shape), one forward for all.

    `forward(x)` takes one batch (B×3×32×32) that every member sees and returns logits K×B×classes.
    """

    def __init__(self, name: str, k: int, num_classes: int, device: torch.device, seed: int) -> None:
        torch.manual_seed(seed)  # as the plain loop, right before build_model: member i = the trial alone
        base = build_model(name, num_classes)
        self.batch_norm = name == "convnet_bn"
        expected = {f"{m}.{p}" for m in CONVS + LINEARS + (NORMS if self.batch_norm else ()) for p in ("weight", "bias")}
        names = {n for n, _ in base.named_parameters()}
        if names != expected:  # the model changed shape: this forward would be wrong, not just slow
            raise ConfigError(f"training.fused knows the reference ConvNet's layers {sorted(expected)}, not {sorted(names)}")
        self.k = k
        self.params = {n: _stack(p, k, device).requires_grad_() for n, p in base.named_parameters()}
        self.buffers = {n: _stack(b, k, device) for n, b in base.named_buffers() if "running_" in n}
        bn = base.features[0][1] if self.batch_norm else None
        self.bn_momentum = bn.momentum if bn is not None else 0.1
        self.bn_eps = bn.eps if bn is not None else 1e-5
        self.training = True

    def weights(self) -> list[torch.Tensor]:
        """What the L1/L2 penalty covers: the conv and linear kernels (as `penalized_weights`), no biases."""
        return [p for p in self.params.values() if p.ndim > 2]  # member dim + rank ≥ 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, k = self.params, self.k
        h = x
        for i, conv in enumerate(CONVS):
            # the first conv reads the shared batch, so K·32 output channels need no repeated input;
            # the second is grouped: member i's 64 outputs see only member i's 32 inputs
            w, b = p[f"{conv}.weight"], p[f"{conv}.bias"]
            h = F.conv2d(h, w.flatten(0, 1), b.flatten(), padding=1) if i == 0 else _grouped_conv(h, w, b)
            if self.batch_norm:  # per channel, so per member; running stats are views of (K, C) buffers
                n = NORMS[i]
                h = F.batch_norm(h, self.buffers[f"{n}.running_mean"].view(-1), self.buffers[f"{n}.running_var"].view(-1),
                                 p[f"{n}.weight"].flatten(), p[f"{n}.bias"].flatten(), self.training,
                                 self.bn_momentum, self.bn_eps)  # fmt: skip
            h = F.max_pool2d(F.relu(h), 2)
        h = h.unflatten(1, (k, -1)).flatten(2).transpose(0, 1)  # K×B×(64·8·8), each member's nn.Flatten order
        fc1, fc2 = LINEARS
        h = BatchedLinear.apply(h, p[f"{fc1}.weight"], p[f"{fc1}.bias"]).relu()
        return BatchedLinear.apply(h, p[f"{fc2}.weight"], p[f"{fc2}.bias"])

    __call__ = forward

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the members at positions `idx` (new leaf tensors; the others are freed)."""
        self.params = {n: p.detach()[idx].requires_grad_() for n, p in self.params.items()}
        self.buffers = {n: b[idx] for n, b in self.buffers.items()}
        self.k = len(idx)


class BatchedLinear(torch.autograd.Function):
    """K linear layers at once: x (K×B×in) · wᵀ (K×in×out) + b, as one `torch.baddbmm` on a GPU.

    The backward multiplies in `nn.Linear`'s orientation (grad_w = gᵀ·x, out×in) where baddbmm's own
    backward computes xᵀ·g and transposes it, so the sums round as in the plain model. On a CPU,
    where fusion only runs to be checked, the products go member by member: a batched product splits
    its work over threads differently from `mm` and moves the last bit, and Adam amplifies 1-ulp
    differences in near-zero gradients (its first updates are ≈ lr·sign(g)) past 1e-4 in two epochs.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        if x.device.type == "cpu":
            return torch.stack([torch.addmm(bk, xk, wk.t()) for xk, wk, bk in zip(x, w, b)])
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        x, w = x.to(g.dtype), w.to(g.dtype)  # bf16 autocast: multiply in the gradient's dtype (autograd casts back)
        if g.device.type == "cpu":
            gx = torch.stack([gk.mm(wk) for gk, wk in zip(g, w)])
            gw = torch.stack([gk.t().mm(xk) for gk, xk in zip(g, x)])
        else:
            gx, gw = g.bmm(w), g.transpose(1, 2).bmm(x)
        return gx, gw, g.sum(1)


def _grouped_conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Member i's conv (weights w[i], K×out×in×3×3) on its own channels of h (B×K·in×H×W), padding 1.

    One grouped convolution on a GPU. On a CPU, where fusion only runs to be checked, one plain
    convolution per member: oneDNN's grouped kernel sums the weight and bias gradients in another
    order on AVX-512 machines, and an L2-penalized SGD trial amplifies that last bit past 1e-4.
    """
    if h.device.type != "cpu":
        return F.conv2d(h, w.flatten(0, 1), b.flatten(), padding=1, groups=len(w))
    return torch.cat([F.conv2d(hk, wk, bk, padding=1) for hk, wk, bk in zip(h.chunk(len(w), 1), w, b)], 1)


def _stack(t: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
    return t.detach().to(device).unsqueeze(0).repeat(k, *([1] * t.ndim)).contiguous()


def _per_member(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) tensor shaped to broadcast over a (K, ...) tensor."""
    return v.view(-1, *([1] * (like.ndim - 1)))


# ----------------------------------------------------------------------------- the fused optimizer


class FusedOptimizer:
    """torch.optim's SGD / Adam / AdamW update, once over (K, ...) tensors, per-member hyperparameters.

    The arithmetic is that of `torch.optim` (single-tensor path): SGD `d = g + wd·w; buf = m·buf + d
    (buf = d on the first step); d = d + m·buf (nesterov) or buf; w -= lr·d`; Adam `g += wd·w` (AdamW:
    `w *= 1 - lr·wd`), `m1.lerp_(g, 1-β1)`, `m2 = β2·m2 + (1-β2)·g²`, `w -= lr/bc1 · m1 / (√m2/√bc2 + eps)`,
    with bias corrections computed in double precision like torch's Python floats. Each tensor
    expression is the one whose rounding equals torch's scalar op on a CPU (`addcmul(g, w, wd)` for
    `add(w, alpha=wd)`, `addcdiv(-s·m1, denom)` for `addcdiv(m1, denom, value=-s)`, ...), so a member
    follows its lone trial bit for bit there. A member with momentum 0 or weight decay 0 gets exactly
    what torch's skipped branch gives.
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.steps = 0  # every member still in the pack has taken every step

    def hyper(self, members: list[Member], epoch: int, first_step: int, steps_per_epoch: int,
              device: torch.device) -> dict[str, Any]:  # fmt: skip
        """The (K,) tensors of one epoch (Adam: (steps, K) tables of its per-step bias corrections).

        Built once per epoch (and when the pack shrinks), so no step copies anything to the device.
        """

        def t(values: list) -> torch.Tensor:  # type: ignore[type-arg]
            return torch.tensor(values, dtype=torch.float32, device=device)

        lr = [m.lrs[epoch - 1] for m in members]
        h: dict[str, Any] = {"neg_lr": t([-x for x in lr]), "any_wd": any(m.weight_decay for m in members)}
        if self.family == "sgd":
            h["weight_decay"] = t([m.weight_decay for m in members])
            h["momentum"] = t([m.momentum for m in members])
            h["any_momentum"] = any(m.momentum for m in members)
            h["nesterov"] = torch.tensor([m.nesterov for m in members], device=device)
            h["any_nesterov"] = any(m.nesterov for m in members)
            return h
        # Adam's per-step scalars, in Python floats as torch computes them, for the epoch's steps
        steps = range(first_step, first_step + steps_per_epoch)
        h["neg_step_size"] = t([[-lr_ / (1 - m.beta1**s) for lr_, m in zip(lr, members)] for s in steps])
        h["bc2_sqrt"] = t([[(1 - m.beta2**s) ** 0.5 for m in members] for s in steps])
        h["one_minus_beta1"] = t([1 - m.beta1 for m in members])
        h["beta2"] = t([m.beta2 for m in members])
        h["one_minus_beta2"] = t([1 - m.beta2 for m in members])
        h["eps"] = t([m.eps for m in members])
        h["coupled_wd"] = t([0.0 if m.decoupled else m.weight_decay for m in members])
        h["any_coupled_wd"] = any(m.weight_decay and not m.decoupled for m in members)
        h["decay"] = t([1 - lr_ * m.weight_decay if m.decoupled else 1.0 for lr_, m in zip(lr, members)])
        h["any_decay"] = any(m.weight_decay and m.decoupled for m in members)
        return h

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: list[torch.Tensor], h: dict[str, Any], j: int) -> None:
        """One update of every member; `j` is the step's index within the epoch (Adam's tables)."""
        self.steps += 1
        for (name, w), g in zip(params.items(), grads):
            s = self.state.setdefault(name, {})
            b = lambda v: _per_member(v, w)  # noqa: E731
            if self.family == "sgd":
                if h["any_wd"]:  # wd 0 adds exactly 0·w: what torch's skipped branch gives
                    g = g.addcmul(w, b(h["weight_decay"]))
                if h["any_momentum"]:  # momentum 0: buf = 0·buf + g = g, as torch without a buffer
                    if "buf" not in s:
                        s["buf"] = g.clone()
                    else:
                        s["buf"].mul_(b(h["momentum"])).add_(g)
                    buf = s["buf"]
                    g = torch.where(b(h["nesterov"]), g.addcmul(buf, b(h["momentum"])), buf) if h["any_nesterov"] else buf
                w.addcmul_(g, b(h["neg_lr"]))
            else:
                if "exp_avg" not in s:
                    s["exp_avg"], s["exp_avg_sq"] = torch.zeros_like(w), torch.zeros_like(w)
                if h["any_decay"]:
                    w.mul_(b(h["decay"]))
                if h["any_coupled_wd"]:
                    g = g.addcmul(w, b(h["coupled_wd"]))
                s["exp_avg"].lerp_(g, b(h["one_minus_beta1"]))
                s["exp_avg_sq"].mul_(b(h["beta2"])).addcmul_(g, g * b(h["one_minus_beta2"]))
                denom = (s["exp_avg_sq"].sqrt() / b(h["bc2_sqrt"][j])).add_(b(h["eps"]))
                w.addcdiv_(b(h["neg_step_size"][j]) * s["exp_avg"], denom)

    def keep(self, idx: torch.Tensor) -> None:
        self.state = {n: {k: v[idx] for k, v in s.items()} for n, s in self.state.items()}


# ----------------------------------------------------------------------------- training a pack


class FusedTrials:
    """An iterable over epochs of K fused trials; see the module docstring. Build with `train_epochs_fused`."""

    def __init__(self, cfgs: list[TrialConfig], data: Dataset | None = None, on_batch: OnBatch | None = None) -> None:
        check_pack(cfgs)
        self.cfgs = list(cfgs)
        self.members = [Member.from_config(c) for c in self.cfgs]
        self.status = ["running"] * len(cfgs)
        self.errors: list[NonFiniteLoss | None] = [None] * len(cfgs)
        self.active = list(range(len(cfgs)))  # trial indices, in the order of the pack's member dim
        self.on_batch = on_batch
        c = self.cfgs[0]
        self.device = resolve_device(c.train.device)
        self.data = data if data is not None else load_data(c.data, self.device)
        self.model = FusedConvNet(c.model.name, len(cfgs), len(self.data.classes), self.device, c.train.seed)
        self.opt = FusedOptimizer(optimizer_family(c.optimizer.name))
        self._started = False

    def remove(self, i: int) -> None:
        """Drop trial `i` (pruned) between epochs; the others continue unchanged, as a smaller pack."""
        if self.status[i] != "running":
            return
        self.status[i] = "removed"
        self._keep([p for p, t in enumerate(self.active) if t != i])

    def _keep(self, positions: list[int]) -> None:
        idx = torch.tensor(positions, device=self.device, dtype=torch.long)
        self.model.keep(idx)
        self.opt.keep(idx)
        self.active = [self.active[p] for p in positions]

    def __iter__(self) -> Iterator[list[Record | None]]:
        if self._started:
            raise RuntimeError("a FusedTrials pack trains once; build a new one")
        self._started = True
        try:
            yield from self._train()
        except torch.OutOfMemoryError as e:
            raise OutOfMemory(f"out of memory on {self.device} with {len(self.active)} fused trials: "
                              f"{str(e).splitlines()[0]}") from None  # fmt: skip

    def _active_members(self) -> list[Member]:
        return [self.members[i] for i in self.active]

    def _hyper(self, epoch: int, first_step: int, steps_per_epoch: int) -> dict[str, Any]:
        """This epoch's per-member tensors: the optimizer's, clipping θ and the L1/L2 λ."""
        h = self.opt.hyper(self._active_members(), epoch, first_step, steps_per_epoch, self.device)
        train = [self.cfgs[i].train for i in self.active]
        h["clip"] = any(t.clip_theta is not None for t in train)
        h["theta"] = torch.tensor([math.inf if t.clip_theta is None else t.clip_theta for t in train], device=self.device)
        h["has_clip"] = torch.tensor([t.clip_theta is not None for t in train], device=self.device)
        h["l1"] = torch.tensor([t.l1 for t in train], device=self.device) if any(t.l1 for t in train) else None
        h["l2"] = torch.tensor([t.l2 for t in train], device=self.device) if any(t.l2 for t in train) else None
        return h

    def _train(self) -> Iterator[list[Record | None]]:
        c, data = self.cfgs[0], self.data
        t = c.train
        steps_per_epoch = math.ceil(len(data.train) / t.batch_size)
        batch_rng = torch.Generator().manual_seed(t.seed)  # the plain loop's shuffle and augmentation stream
        memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        forward: Callable[[torch.Tensor], torch.Tensor] = self.model.forward
        if t.compile:  # recompiles when the pack shrinks (new shapes)
            forward = torch.compile(forward)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if t.precision == "bf16" else nullcontext()

        for epoch in range(1, t.epochs + 1):
            if not self.active:
                return
            start = time.perf_counter()
            first_step = self.opt.steps + 1
            hyper = self._hyper(epoch, first_step, steps_per_epoch)
            self.model.training = True
            k = len(self.active)
            loss_sum = torch.zeros(k, device=self.device)
            pen_sum = torch.zeros(k, device=self.device)
            correct = torch.zeros(k, device=self.device, dtype=torch.long)
            norms: list[torch.Tensor] = []
            seen = steps = 0
            records: list[Record | None] = [None] * len(self.cfgs)

            def leave_nonfinite(bad: list[int]) -> None:
                """Record the partial epoch of the members at positions `bad` (as the plain loop); drop them."""
                nonlocal loss_sum, pen_sum, correct, norms, hyper
                stats = _train_stats(loss_sum, pen_sum, correct, norms, seen, steps, hyper["theta"])
                seconds = time.perf_counter() - start
                for p in bad:
                    i = self.active[p]
                    records[i] = self._record(i, epoch, stats[p], NO_VAL, seconds, seen / seconds)
                    self.status[i] = "nonfinite"
                    self.errors[i] = NonFiniteLoss(epoch, steps, records[i]["train_loss"])
                keep = [p for p in range(len(self.active)) if p not in bad]
                idx = torch.tensor(keep, device=self.device, dtype=torch.long)
                loss_sum, pen_sum, correct = loss_sum[idx], pen_sum[idx], correct[idx]
                norms = [n[idx] for n in norms]
                self._keep(keep)
                if self.active:
                    hyper = self._hyper(epoch, first_step, steps_per_epoch)

            for x, y in batches(data.train, t.batch_size, c.data, batch_rng, c.data.augment):
                x = x.contiguous(memory_format=memory_format)
                loss, pen, logits, norm = self._step(forward, x, y, hyper, steps, autocast, memory_format)
                steps += 1
                seen += len(y)
                loss_sum += loss * len(y)
                pen_sum += pen
                correct += (logits.argmax(-1) == y).sum(1)
                norms.append(norm)
                if self.on_batch is not None:
                    self.on_batch(epoch, steps, steps_per_epoch)
                if steps % FINITE_CHECK_EVERY == 0 and (bad := _nonfinite(loss_sum)):
                    leave_nonfinite(bad)
                    if not self.active:
                        break
            if self.active and (bad := _nonfinite(loss_sum)):
                leave_nonfinite(bad)
            if self.active:
                stats = _train_stats(loss_sum, pen_sum, correct, norms, seen, steps, hyper["theta"])
                images_per_second = seen / (time.perf_counter() - start)
                val = self._evaluate(forward, data.val, memory_format, autocast)
                seconds = time.perf_counter() - start
                for p, i in enumerate(self.active):
                    records[i] = self._record(i, epoch, stats[p], val[p], seconds, images_per_second)
                    if epoch == t.epochs:
                        self.status[i] = "completed"
            yield records

    def _step(self, forward, x, y, h, j, autocast, memory_format):  # type: ignore[no-untyped-def]
        """One step of every member: the plain loop's `train_step`, vectorized over the member dim."""
        k = len(self.active)
        with autocast:
            logits = forward(x)  # K×B×C
            # log-softmax over the last, contiguous dim as in the plain loop: a strided class dim takes
            # another kernel whose rounding Adam amplifies (its first steps are ≈ lr·sign(g))
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.repeat(k), reduction="none").view(k, -1).mean(1)
        pen = self._penalty(h)
        params = list(self.model.params.values())
        grads = list(torch.autograd.grad((loss + pen).sum(), params))  # a sum: each member's gradient is its own
        norm = _member_norms(grads, memory_format)
        if h["clip"]:  # clip_grad_norm_: g·min(θ/(norm+1e-6), 1); members without θ keep g·1
            # θ/t for a Python θ is t.reciprocal()·θ in torch (Tensor.__rtruediv__), which rounds otherwise than θ_t/t
            coef = torch.where(h["has_clip"], ((norm + CLIP_EPS).reciprocal() * h["theta"]).clamp(max=1.0), 1.0)
            for g in grads:
                g.mul_(_per_member(coef, g))
        self.opt.step(self.model.params, grads, h, j)
        return loss.detach(), pen.detach(), logits.detach(), norm

    def _penalty(self, h: dict[str, Any]) -> torch.Tensor:
        """λ₁·Σ|w| + λ₂·Σw² per member over its own weights (as `training.optim.penalty`)."""
        total = torch.zeros(len(self.active), device=self.device)
        weights = self.model.weights()
        # where(λ ≠ 0, ...): a member without the term gets exactly 0, even once its weights are inf
        if h["l1"] is not None:
            total = total + torch.where(h["l1"] != 0, h["l1"] * sum(w.abs().flatten(1).sum(1) for w in weights), 0.0)
        if h["l2"] is not None:
            total = total + torch.where(h["l2"] != 0, h["l2"] * sum(w.pow(2).flatten(1).sum(1) for w in weights), 0.0)
        return total

    def _record(self, i: int, epoch: int, stats: list[float], val: Record, seconds: float,
                images_per_second: float) -> Record:  # fmt: skip
        """Trial `i`'s record of this epoch, as the plain loop writes it."""
        r = {"epoch": epoch, **dict(zip(TRAIN_STATS, stats)), "lr": self.members[i].lrs[epoch - 1], **val,
             "epoch_seconds": seconds, "images_per_second": images_per_second}  # fmt: skip
        return {key: r[key] for key in RECORD_KEYS}

    @torch.no_grad()
    def _evaluate(self, forward, split: Split, memory_format, autocast) -> list[Record]:  # type: ignore[no-untyped-def]
        """Each member's loss and metrics on a whole split (eval mode), as the plain loop's `evaluate`."""
        self.model.training = False
        logits = predict(forward, split, self.cfgs[0], memory_format, autocast, batch_dim=1)  # K×N×C
        self.model.training = True
        return [split_metrics(member_logits, split.y) for member_logits in logits]


def _member_norms(grads: list[torch.Tensor], memory_format: torch.memory_format) -> torch.Tensor:
    """Each member's global L2 norm over its own gradients only: clip_grad_norm_'s norm of the per-tensor norms.

    On a CPU, member by member over tensors laid out as the plain model's gradients are (conv kernels
    channels_last when the loop is): a sum runs in memory order, and one rounding apart in the norm
    changes the clipped step, which a trial near its stability edge (Adam, clipping) amplifies past
    1e-4 within two epochs. On a GPU, one reduction per tensor over all members.
    """
    if grads[0].device.type != "cpu":
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1), dim=1)
    as_plain = [[g[i].contiguous(memory_format=memory_format) if g.ndim == 5 else g[i] for g in grads] for i in range(len(grads[0]))]
    return torch.stack([torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in ts])) for ts in as_plain])


def _nonfinite(loss_sum: torch.Tensor) -> list[int]:
    """Positions of members whose running loss is NaN/inf (one device sync, like the plain loop's check)."""
    return torch.nonzero(~torch.isfinite(loss_sum)).flatten().tolist()


TRAIN_STATS = ("train_loss", "train_acc", "penalty", "grad_norm", "grad_norm_max", "clip_fraction")


def _train_stats(loss_sum, pen_sum, correct, norms, seen, steps, theta) -> list[list[float]]:  # type: ignore[no-untyped-def]
    """Per member, the TRAIN_STATS values in one device sync; `theta` is (K,) with inf where a trial has no θ."""
    norm_t = torch.stack(norms).float()  # steps×K
    clip_fraction = (norm_t > theta).float().mean(0)  # as the plain loop's (norms > θ).float().mean()
    return torch.stack([loss_sum / seen, correct / seen, pen_sum / steps, norm_t.mean(0), norm_t.max(0).values,
                        clip_fraction], dim=1).tolist()  # fmt: skip


def train_epochs_fused(
    cfgs: list[TrialConfig], data: Dataset | None = None, on_batch: OnBatch | None = None
) -> FusedTrials:
    """Train `cfgs` as one fused pack: iterate it for per-epoch lists of records (None once a member left)."""
    return FusedTrials(cfgs, data, on_batch)


def fit_fused(
    cfgs: list[TrialConfig],
    data: Dataset | None = None,
    on_epoch: Callable[[int, Record], None] | None = None,
) -> list[FitResult]:
    """`fit` for a pack: one FitResult per trial ('completed' or 'nonfinite'), `on_epoch(i, record)`."""
    pack = train_epochs_fused(cfgs, data)
    results = [FitResult("completed") for _ in cfgs]
    for records in pack:
        for i, r in enumerate(records):
            if r is not None:
                results[i].records.append(r)
                if on_epoch is not None:
                    on_epoch(i, r)
    for i, res in enumerate(results):
        if pack.status[i] == "nonfinite":
            res.status, res.message = "nonfinite", str(pack.errors[i])
    return results
