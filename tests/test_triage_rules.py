"""Curve rules on synthetic curves: every label, scale invariance, lengths 3..1000, noise, NaN/inf,
empty and one-epoch curves, gradient evidence, and the online verdict's conservatism."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import triage
from triage import Thresholds, classify, classify_many, load_thresholds, online_verdict

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "triage"))
from shapes import EXPECTED, LN2, LN10, SHAPES, noisy, scaled  # noqa: E402

SHORT_OK = {"stuck": (3, 5), "nonfinite": (3, 5), "rising": (3, 5), "healthy": (3, 5), "dead": (5,)}


def _cases():
    for name in SHAPES:
        for n in (*SHORT_OK.get(name, ()), 8, 30, 200, 1000):
            yield name, n


@pytest.mark.parametrize("name,n", list(_cases()))
def test_shape_gets_its_label_at_any_scale_level_and_noise(name: str, n: int) -> None:
    """Same curve ×0.1, ×1, ×100, at ln 2 and at ln 10, clean and with 2% noise → the same verdict."""
    labels = set()
    for level in (LN2, LN10):
        for factor in (0.1, 1.0, 100.0):
            for noise in (0.0, 0.02):
                curves = scaled(SHAPES[name](n, level), factor)
                if noise:
                    curves = noisy(curves, noise, seed=n)
                labels.add(classify(curves).label)
    assert labels == {EXPECTED[name]}


def test_dead_three_epochs_clean() -> None:
    assert classify(SHAPES["dead"](3, LN10)).label == "diverging"


def test_exploded_then_flat_at_chance_is_diverging_not_plateau() -> None:
    for level in (LN2, LN10):
        curve = [level * 30] + [level] * 24
        v = classify({"train_loss": curve})
        assert v.label == "diverging" and "died" in v.reason
        # the same flat level without the explosion is a plateau
        assert classify({"train_loss": [level * 1.01] + [level] * 24}).label == "plateau"


def test_two_epochs_that_exploded_and_learned_nothing_are_diverging() -> None:
    """Too short for a flat stretch: epoch 1 far above epoch 2 with the accuracy unmoved (adam at lr 3.6, measured)."""
    exploded = {k: np.array(v) for k, v in {"train_loss": [9.4e8, 1.66e8], "val_loss": [3.16e8, 1323.0],
                                            "val_acc": [0.1, 0.1], "grad_norm": [8.5e7, 9.3e6]}.items()}  # fmt: skip
    for factor in (1e-6, 1.0):
        v = classify(scaled(exploded, factor))
        assert v.label == "diverging" and "learned nothing" in v.reason, v.reason
    # the same fall while the accuracy moves, or with no accuracy to look at, is not called dead
    assert classify({**exploded, "val_acc": np.array([0.1, 0.3])}).label != "diverging"
    assert classify({k: c for k, c in exploded.items() if k != "val_acc"}).label != "diverging"
    assert classify({"train_loss": [2.1, 1.8], "val_loss": [1.95, 1.75], "val_acc": [0.28, 0.36]}).label == "healthy"
    assert classify({"train_loss": [2.302, 2.298], "val_acc": [0.1, 0.1]}).label != "diverging"  # a slow start


def test_a_loss_that_shrinks_back_after_an_explosion_with_the_accuracy_frozen_is_diverging() -> None:
    """SGD at lr 8.91, 1,500 images, 3 epochs (measured): grad_norm exploded in epoch 1 and the loss fell 40%
    while val_acc sat at 0.1 in every epoch. It was called healthy; nothing was learned."""
    run = {"train_loss": [10.64, 8.70, 6.40], "val_loss": [10.19, 7.97, 5.78], "val_acc": [0.1, 0.1, 0.1],
           "train_acc": [0.096, 0.083, 0.112], "grad_norm": [65.0, 1.35, 0.623]}  # fmt: skip
    for factor in (1e-3, 1.0):
        v = classify(scaled({k: np.array(c) for k, c in run.items()}, factor))
        assert v.label == "diverging" and "learned nothing" in v.reason and "grad_norm exploded" in v.reason, v.reason
    # the same losses with an accuracy that moves, or a grad norm that never exploded, are not called dead
    assert classify({**run, "val_acc": [0.1, 0.14, 0.2]}).label != "diverging"
    assert classify({**run, "grad_norm": [2.0, 1.5, 1.2]}).label != "diverging"


def test_learned_then_died_is_diverging() -> None:
    """Learns to 60% of chance, then an explosion kills it: back at chance, flat."""
    curve = [2.3, 1.8, 1.5, 1.4, 40.0] + [2.303] * 10
    v = classify({"train_loss": curve, "val_loss": [2.2, 1.7, 1.5, 1.45] + [2.303] * 11})
    assert v.label == "diverging"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_values_anywhere_mean_diverging(bad: float) -> None:
    for where in ("train_loss", "val_loss", "grad_norm"):
        curves = {k: list(v) for k, v in SHAPES["healthy"](10, LN10).items()}
        curves.setdefault("grad_norm", [1.0] * 10)
        curves[where][6] = bad
        v = classify(curves)
        assert v.label == "diverging" and v.rule == "nonfinite"
        assert "epoch 7" in v.reason and where in v.reason


def test_a_short_run_far_above_where_the_others_start_blew_up() -> None:
    """A full sweep measured here: lr 4.6 pruned after epoch 1 at train_loss 78, while its siblings start
    at ln 10. Alone it is too short to judge; among its siblings it blew up. Longer runs stay judged alone."""
    siblings = [{"train_loss": [2.30, 2.25, 2.2]}, {"train_loss": [2.31, 2.3, 2.3]},
                {"train_loss": [2.29, 2.28, 2.28]}, {"train_loss": [2.30, 2.3, 2.29]}]
    pruned = {"train_loss": [78.0], "val_acc": [0.1]}
    alone = classify(pruned, pruned=True)
    assert alone.label == "undetermined" and alone.rule == "short"
    among = classify_many([*siblings, pruned], metas=[None] * 4 + [{"pruned": True}])[-1]
    assert among.label == "diverging" and among.rule == "peers", among
    assert "78 at epoch 1, 33.9× the median first epoch of the 5 runs judged with it (2.3)" in among.reason, among.reason
    two = classify_many([*siblings, {"train_loss": [60.0, 40.0]}])[-1]
    assert two.label == "diverging" and "never came below 40 in 2 epochs" in two.reason, two.reason
    near = classify_many([*siblings, {"train_loss": [20.0]}])[-1]  # 8.7×: not far enough to be sure
    assert near.rule == "short"
    mse = [1e6 * (1 + 0.5 * 0.9 ** e) for e in range(30)]  # another loss in the same experiment, judged alone
    assert classify_many([*siblings, {"train_loss": mse}])[-1].label == "healthy"
    assert classify_many([*siblings[:2], pruned])[-1].rule == "short"  # 3 runs: no median to trust


def test_empty_missing_and_one_epoch_curves() -> None:
    assert classify({}).label == "crashed"
    assert classify({"train_loss": [], "val_loss": []}).label == "crashed"
    assert classify({"train_loss": [float("nan")]}).label == "diverging"
    one = classify({"train_loss": [2.1], "val_loss": [1.9]})  # neither healthy nor failed: not judged at all
    assert one.label == "undetermined" and one.confidence == 1.0 and "1 epoch" in one.reason
    two = classify({"train_loss": [2.31, 2.28], "val_loss": [2.38, 6.18]})  # too short to call, but said as it is
    assert "val_loss ended at 6.18, 160% above its minimum at epoch 1" in two.reason, two.reason
    assert two.label == "undetermined" and two.rule == "short"  # the loss barely moved
    assert "too short to tell a slow start from a plateau" in two.reason
    rose = classify({"train_loss": [2.25, 2.39], "val_loss": [2.32, 2.27], "val_acc": [0.11, 0.13]}, pruned=True)
    assert rose.label == "undetermined" and "train_loss rose 6.2% (2.25 → 2.39)" in rose.reason, rose.reason  # not "fell -6.2%"
    fell = classify({"train_loss": [2.3, 1.9], "val_loss": [2.2, 1.8]})  # two epochs that did learn are judged
    assert fell.label == "healthy" and fell.rule == "healthy" and "fell 17%" in fell.reason, fell.reason
    assert classify({"train_loss": [2.3, 2.3 * 50]}).label == "diverging"  # two epochs, climbing
    assert classify({}, failure="oom", error="CUDA out of memory").label == "crashed"


def test_failed_with_an_exception_is_crashed_even_with_a_partial_curve() -> None:
    v = classify(SHAPES["healthy"](5, LN10), failure="exception", error="RuntimeError: boom")
    assert v.label == "crashed" and "boom" in v.reason and "5 recorded epochs" in v.reason
    died = classify({"train_loss": [2.3]}, failure="interrupted", error="the process running this trial died")
    assert died.reason == "the run was interrupted after 1 recorded epoch: the process running this trial died."


def test_accuracy_only_runs_use_no_loss() -> None:
    assert classify({"val_acc": [0.1, 0.2, 0.3]}).label == "crashed"  # no loss curve: nothing to judge


def test_slow_start_is_not_a_plateau_at_any_length() -> None:
    for n in (10, 40, 300):
        flat = int(0.35 * n)
        u = np.arange(n - flat) / (n - flat)
        curve = np.r_[np.full(flat, LN10), LN10 * (0.2 + 0.8 * np.exp(-6 * u))]
        v = classify({"train_loss": curve})
        assert v.label in ("healthy", "unconverged"), (n, v.reason)  # learning at the end: never a plateau


def test_long_noisy_healthy_run() -> None:
    rng = np.random.default_rng(0)
    u = np.arange(1, 1001) / 1000
    train = LN2 * (0.3 + 0.7 * np.exp(-6 * u)) * np.exp(rng.normal(0, 0.02, 1000))  # an epoch average: smoother
    val = LN2 * (0.45 + 0.55 * np.exp(-6 * u)) * np.exp(rng.normal(0, 0.05, 1000))
    assert classify({"train_loss": train, "val_loss": val}).label == "healthy"


def test_reason_is_one_sentence_with_numbers() -> None:
    for name in SHAPES:
        v = classify(SHAPES[name](30, LN10))
        assert v.reason.endswith(".") and v.reason.count(". ") == 0, v.reason
        assert any(ch.isdigit() for ch in v.reason)
        assert 0.0 < v.confidence <= 1.0


def test_healthy_reason_says_where_val_loss_ended() -> None:
    train = [2.3, 2.1, 1.9, 1.8, 1.7, 1.65]
    at_min = classify({"train_loss": train, "val_loss": [2.2, 2.0, 1.9, 1.85, 1.8, 1.75]}).reason
    assert "val_loss ended at its minimum, 1.77 at epoch 5." in at_min, at_min  # tail median, 3-epoch smoothed minimum
    near = classify({"train_loss": train, "val_loss": [2.2, 2.0, 1.8, 1.7, 1.75, 1.78]}).reason
    assert "val_loss ended at 1.77, within 0.9% of its minimum at epoch 4." in near, near


def test_overfit_reason_quotes_the_rise_and_the_fall() -> None:
    v = classify(SHAPES["overfit"](30, LN10))
    assert v.label == "overfit"
    assert "val_loss rose" in v.reason and "train_loss fell" in v.reason and "epoch" in v.reason


# --- gradient evidence ------------------------------------------------------------------------

def test_exploding_gradients_behind_a_dead_run_are_named() -> None:
    """The loss barely shows the explosion (epoch-1 average 1.2× chance) but the gradient norm does."""
    loss = [2.303 * 1.2] + [2.303] * 14
    grad = [5e3] + [0.02] * 14
    v = classify({"train_loss": loss, "grad_norm": grad})
    assert v.label == "diverging" and "exploded" in v.reason and "grad_norm" in v.reason
    assert classify({"train_loss": loss}).label == "plateau"  # without the grad norm it looks stuck


def test_vanishing_gradients_behind_a_plateau_are_named() -> None:
    loss = [0.6931] * 20
    grad = list(np.geomspace(1.0, 1e-4, 20))
    v = classify({"train_loss": loss, "grad_norm": grad})
    assert v.label == "plateau" and "vanishing gradients" in v.reason


def test_clipping_that_held_while_the_norm_grew_is_reported() -> None:
    loss = list(np.linspace(2.3, 1.6, 8)) + [float("nan")]
    grad = list(np.geomspace(1.0, 80.0, 8)) + [float("inf")]
    clip = [0.2, 0.5, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0]
    v = classify({"train_loss": loss, "grad_norm": grad, "clip_fraction": clip})
    assert v.label == "diverging"
    assert "clipping held" in v.reason and "80" in v.reason


# --- online -----------------------------------------------------------------------------------

def _prefixes(curves: dict, start: int = 1):
    n = max(len(v) for v in curves.values())
    for k in range(start, n + 1):
        yield k, {name: v[:k] for name, v in curves.items()}


@pytest.mark.parametrize("name", ["healthy", "slow_start", "stuck", "flat_after_drop", "overfit", "oscillating",
                                  "unconverged"])
def test_online_never_stops_a_run_that_is_not_diverging(name: str) -> None:
    for level in (LN2, LN10):
        for n in (6, 30, 120):
            for seed in (0, 1):
                curves = noisy(SHAPES[name](n, level), 0.03, seed)
                for k, part in _prefixes(curves):
                    assert online_verdict(part) is None, (name, n, k)


def test_online_does_not_stop_a_spike_that_recovers() -> None:
    """A loss spike of 8× in epoch 1 followed by slow learning (no collapse) is left alone."""
    curve = [2.3 * 8, 2.30, 2.29, 2.28, 2.2, 2.0, 1.8, 1.6, 1.5, 1.4]
    for k, part in _prefixes({"train_loss": curve, "val_loss": [2.3, 2.29, 2.285, 2.27, 2.2, 2.0, 1.85, 1.7,
                                                                 1.6, 1.5]}):
        assert online_verdict(part) is None, k


def test_online_stops_nonfinite_at_once() -> None:
    v = online_verdict({"train_loss": [2.3, 2.0, float("nan")]})
    assert v is not None and v.label == "diverging" and "epoch 3" in v.reason


def test_online_stops_an_explosion_after_two_epochs() -> None:
    curve = [2.3, 2.0, 1.8, 30.0, 400.0, 5e3]
    stops = [k for k, part in _prefixes({"train_loss": curve}) if online_verdict(part)]
    assert stops and stops[0] == 5


def test_online_stops_a_dead_run_once_it_is_flat_with_constant_predictions() -> None:
    curves = {"train_loss": [2.3 * 200] + [2.3026] * 19, "val_loss": [2.3026] * 20, "val_acc": [0.1] * 20}
    stops = [k for k, part in _prefixes(curves) if online_verdict(part)]
    assert stops and stops[0] <= 6
    assert classify(curves).label == "diverging"


# --- API and thresholds -----------------------------------------------------------------------

def test_classify_many_matches_classify() -> None:
    runs = [SHAPES[name](n, LN10) for name in SHAPES for n in (8, 30)]
    assert [v.label for v in classify_many(runs)] == [classify(r).label for r in runs]


def test_thresholds_come_from_the_yaml_and_change_verdicts() -> None:
    th = load_thresholds()
    assert isinstance(th, Thresholds) and th.explode_ratio > 1
    curve = {"train_loss": [2.3 * 30] + [2.3] * 20}
    assert classify(curve, th).label == "diverging"
    strict = th.replace(explode_ratio=1e6, dead_short_ratio=1e6, diverge_rise=1e6, diverge_lost=1e6)
    assert classify(curve, strict).label != "diverging"


def test_thresholds_reject_a_missing_value(tmp_path) -> None:
    from triage.thresholds import DEFAULT_PATH
    text = "\n".join(ln for ln in DEFAULT_PATH.read_text().splitlines() if not ln.startswith("explode_ratio"))
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ValueError, match="explode_ratio"):
        load_thresholds(tmp_path / "t.yaml")


def test_pruned_runs_are_never_unconverged() -> None:
    curves = SHAPES["unconverged"](30, LN10)
    assert classify(curves).label == "unconverged"
    v = classify(curves, pruned=True)
    assert v.label == "healthy" and "pruner" in v.reason


def test_import_triage_does_not_import_torch_or_training() -> None:
    import subprocess
    import sys
    code = "import sys, triage; triage.classify({'train_loss': [1, 0.5]}); " \
           "print(any(m == 'torch' or m.startswith('torch.') or m == 'training' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert math.isfinite(triage.classify({"train_loss": [1.0, 0.5, 0.4]}).confidence)


# A real run (python -m sweeps run +sweep=lr with sweep.sampler.name=grid, lr=4.0, SGD, 600 images,
# 8 epochs, seed 0): gradients exploded in epochs 1-2, then the network predicted one class
# (val_acc frozen at 0.1) while the loss hovered just above ln 10. It once read "healthy".
DEAD_AT_CHANCE = dict(
    train_loss=[2.5377, 2.4797, 2.4265, 2.3668, 2.3541, 2.3565, 2.3294, 2.3665],
    val_loss=[2.3596, 2.4012, 2.3298, 2.3795, 2.3577, 2.3446, 2.3186, 2.3237],
    train_acc=[0.0783, 0.1283, 0.0983, 0.1017, 0.1083, 0.0817, 0.1083, 0.0833],
    val_acc=[0.1] * 8,
    grad_norm=[2.7948, 6.5857, 0.2248, 0.1781, 0.1912, 0.152, 0.1053, 0.1479],
    lr=[4.0] * 8,
)


def test_constant_predictions_after_a_gradient_explosion_is_diverging() -> None:
    v = classify(DEAD_AT_CHANCE)
    assert v.label == "diverging" and "predicts a single class" in v.reason and "exploded" in v.reason
    without_grad = {k: v for k, v in DEAD_AT_CHANCE.items() if k != "grad_norm"}
    assert classify(without_grad).label == "plateau"  # frozen accuracy alone: it never learned
    scaled = {k: [x * 100 for x in v] if k.endswith("loss") else v for k, v in DEAD_AT_CHANCE.items()}
    assert classify(scaled).label == "diverging"  # scale-invariant


# A real run (python -m sweeps run +sweep=lr, 5 epochs × 5,000 images, SGD lr 0.195, trial 1): it learned in
# epoch 1 (train_acc 0.22), spiked (val_loss 5.3), then sat at chance with the loss above its first epoch.
# It read "plateau: train_loss never improved", whose advice (raise the learning rate) points the wrong way.
LEARNED_THEN_COLLAPSED = dict(
    train_loss=[2.1558, 2.5341, 2.3132, 2.3079, 2.3142],
    val_loss=[5.2798, 2.2913, 2.306, 2.3119, 2.2844],
    train_acc=[0.2216, 0.1076, 0.1082, 0.107, 0.1116],
    val_acc=[0.103, 0.1152, 0.1002, 0.0998, 0.1286],
    grad_norm=[1.4854, 3.5301, 0.4346, 0.1398, 0.5616],
)


def test_a_network_that_learned_and_then_collapsed_is_diverging() -> None:
    v = classify(LEARNED_THEN_COLLAPSED)
    assert v.label == "diverging" and v.rule == "collapsed", v
    assert "train_acc fell from 0.222 at epoch 1 to 0.112 (lost 50%) while train_loss ended no lower than then" in v.reason
    scaled = {k: [x * 100 for x in c] if k.endswith("loss") else c for k, c in LEARNED_THEN_COLLAPSED.items()}
    assert classify(scaled).rule == "collapsed"  # scale-invariant in the loss
    # the accuracy that fell while the training loss kept falling is overfitting's or noise's, not a collapse
    still_fitting = {**LEARNED_THEN_COLLAPSED, "train_loss": [2.1558, 2.0, 1.9, 1.8, 1.75]}
    assert classify(still_fitting).rule != "collapsed"
    recovered = {**LEARNED_THEN_COLLAPSED, "train_acc": [0.2216, 0.1076, 0.1082, 0.107, 0.2]}  # back at the end
    assert classify(recovered).rule != "collapsed"
    val_only = {k: LEARNED_THEN_COLLAPSED[k] for k in ("val_loss", "val_acc")}  # no training loss: could be overfitting
    assert classify({**val_only, "val_acc": [0.3, 0.25, 0.2, 0.18, 0.17]}).rule != "collapsed"


# A real run (python -m sweeps run +sweep=lr optimizer=adam, 5 epochs × 2,000 images, lr 2.24, trial 7):
# the loss exploded to 1.8e8 and sank back to 2.48 while val_acc stayed at chance. It read
# "healthy 0.95: train_loss fell 100%", because 0.1 - 0.098 is not <= 0.002 in floating point.
EXPLODED_AND_SANK = dict(
    train_loss=[180900000.0, 1629.0, 5027.0, 3.475, 2.478],
    val_loss=[3651.0, 13910.0, 3.45, 2.49, 2.372],
    train_acc=[0.0975, 0.1055, 0.0995, 0.0925, 0.1105],
    val_acc=[0.1, 0.098, 0.1, 0.1, 0.1],
    grad_norm=[8125000.0, 1295.0, 3384.0, 4.325, 0.184],
)


def test_a_loss_that_sank_back_from_an_explosion_without_learning_is_diverging() -> None:
    v = classify(EXPLODED_AND_SANK)
    assert v.label == "diverging" and "val_acc frozen at 0.1" in v.reason, v
    # a network still shaking after the explosion wiggles a few images: not frozen, but it never rose either
    wiggling = {**EXPLODED_AND_SANK, "val_acc": [0.1, 0.096, 0.1, 0.104, 0.1]}
    v = classify(wiggling)
    assert v.label == "diverging" and "val_acc never more than 0.004 above its first epoch (0.1)" in v.reason, v
    learning = {**wiggling, "val_acc": [0.1, 0.12, 0.16, 0.2, 0.24]}  # the same loss with the accuracy rising
    assert classify(learning).label != "diverging"


def test_pruned_note_only_for_the_pruners_stops() -> None:
    """A stopped run's reason names the pruner by default; an explicit empty note (triage's own stop) does not."""
    stuck = {"train_loss": [2.31, 2.30, 2.30, 2.30, 2.30], "val_loss": [2.30] * 5}
    assert "(stopped early by the pruner)" in classify(stuck, pruned=True).reason
    assert "pruner" not in classify(stuck, pruned=True, note="").reason


def test_a_stall_at_an_lr_far_above_the_runs_that_learned_is_diverging() -> None:
    """A clip sweep at lr 0.5-5 measured here: lr 3 sat at chance from epoch 1 ("plateau: raise the learning
    rate") while three runs at lower lr diverged. A stall looks the same at lr 1e-5 and at lr 3; the lrs
    of the runs judged with it tell which."""
    def run(lr: float, loss: list[float], optimizer: str = "sgd") -> tuple[dict, dict]:
        return {"train_loss": loss, "lr": [lr] * len(loss)}, {"optimizer": optimizer}

    learns, stuck = [2.3, 2.0, 1.8, 1.6, 1.5, 1.4], [2.303, 2.302, 2.303, 2.302, 2.303, 2.302]
    climbs = [2.3, 1.9, 2.5, 3.5, 4.0, 4.5]

    def verdicts(*runs: tuple[dict, dict]) -> list:
        return classify_many([c for c, _ in runs], metas=[m for _, m in runs])

    high = verdicts(run(0.05, learns), run(0.1, learns), run(1.0, stuck))[-1]
    assert high.label == "diverging" and high.rule == "stalled_high_lr", high
    assert "at lr 1, where the 2 runs that learned had lr ≤ 0.1: the lr is too high" in high.reason, high.reason
    assert verdicts(run(0.05, learns), run(0.1, learns), run(1e-4, stuck))[-1].label == "plateau"  # starved
    above_died = verdicts(run(0.6, climbs), run(1.3, climbs), run(3.0, stuck))[-1]
    assert above_died.rule == "stalled_high_lr" and "2 runs at lower lr (≤ 1.3) diverged" in above_died.reason
    # another optimizer's lrs say nothing (adam learns at 1e-3), nor do runs at the same lr (a reg sweep)
    assert verdicts(run(1e-3, learns, "adam"), run(2e-3, learns, "adam"), run(0.05, stuck))[-1].label == "plateau"
    assert verdicts(run(0.05, climbs), run(0.05, climbs), run(0.05, stuck))[-1].label == "plateau"
