"""Failure-region rules from a shallow decision tree over trial params."""

from __future__ import annotations

import numpy as np

from triage.regions import choose_params, failure_rules


def _trials(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    params, labels = [], []
    for i in range(n):
        lr = 10 ** rng.uniform(-4, 1)
        clip = None if i % 2 else 10 ** rng.uniform(-1, 1)
        l2 = rng.uniform(0, 1)
        opt = "adam" if i % 3 == 0 else "sgd"
        params.append({"optimizer.lr": repr(lr), "train.clip_theta": str(clip), "train.l2": repr(l2),
                       "optimizer.name": opt, "train.epochs": "10"})
        if lr > 0.5 and clip is None:
            labels.append("diverging")
        elif l2 > 0.7:
            labels.append("plateau")
        else:
            labels.append("healthy")
    return params, labels


def test_planted_thresholds_and_the_off_switch_are_recovered() -> None:
    params, labels = _trials()
    rules = failure_rules(params, labels, ["diverging", "plateau"])
    div = next(r for r in rules if r.label == "diverging")
    text = str(div)
    lr = next(c for c in div.conditions if c.param == "optimizer.lr")
    assert lr.op == ">" and 0.25 <= float(lr.value) <= 1.0, text
    assert "train.clip_theta is off" in text and div.hits == div.support == div.label_total
    assert "cap optimizer.lr below" in div.suggestion and "keep train.clip_theta on" in div.suggestion
    pl = next(r for r in rules if r.label == "plateau")
    l2 = next(c for c in pl.conditions if c.param == "train.l2")
    assert l2.op == ">" and 0.5 <= float(l2.value) <= 0.9
    assert str(pl).endswith(f"→ plateau ({pl.hits} of {pl.support} trials)")


def test_categorical_params_become_flags() -> None:
    params, _ = _trials()
    labels = ["overfit" if p["optimizer.name"] == "adam" else "healthy" for p in params]
    rules = failure_rules(params, labels, ["overfit"])
    assert [str(c) for c in rules[0].conditions] == ["optimizer.name = adam"]
    assert "drop optimizer.name=adam" in rules[0].suggestion


def test_space_tag_chooses_the_features_and_constant_params_are_ignored() -> None:
    params, labels = _trials()
    assert choose_params(params, "optimizer.lr, train.l2") == ["optimizer.lr", "train.l2"]
    assert "train.epochs" not in choose_params(params, None)
    rules = failure_rules(params, labels, ["diverging"], space="train.l2")
    assert all(c.param == "train.l2" for r in rules for c in r.conditions)


def test_too_few_trials_or_no_failures_give_no_rules() -> None:
    params, labels = _trials(3)
    assert failure_rules(params, labels, ["diverging"]) == []
    params, _ = _trials()
    assert failure_rules(params, ["healthy"] * len(params), ["diverging"]) == []


def test_importances_that_optuna_can_only_make_equal_become_a_note() -> None:
    import warnings

    import optuna

    from triage.summary import _importances

    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def study(n: int) -> optuna.Study:
        s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        s.optimize(lambda t: 10 * t.suggest_float("lr", 1e-4, 1, log=True) + 0.01 * t.suggest_float("l2", 0, 1), n_trials=n)
        return s

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        few = _importances(study(1))
        importances, note = _importances(study(30))
    assert not shown  # Optuna's warning becomes the note, not noise on the user's terminal
    assert few == (None, "no hyperparameter importances: too few complete trials to rank the params (Optuna: The "
                         "number of trials is too small to compute importances. Parameter importances will be equal.)")  # fmt: skip
    assert note is None and importances is not None and importances["lr"] > importances["l2"]


def test_a_region_that_two_params_explain_equally_names_both() -> None:
    # the sweep of the bug report: both diverging trials had the cosine schedule *and* a huge lr,
    # and the rule named only the schedule, so the user would have dropped cosine and kept lr 4
    lrs = ["0.0196", "3.58", "7.25e-05", "4.6", "0.00428"]
    schedules = ["none", "cosine", "none", "cosine", "none"]
    params = [{"optimizer.lr": lr, "scheduler.name": s} for lr, s in zip(lrs, schedules)]
    labels = ["plateau", "diverging", "plateau", "diverging", "healthy"]
    (rule,) = [r for r in failure_rules(params, labels, ["diverging"]) if r.label == "diverging"]
    named = {c.param for c in rule.conditions} | {c.param for c in rule.also}
    assert named == {"optimizer.lr", "scheduler.name"}, str(rule)
    lr = next(c for c in rule.conditions + rule.also if c.param == "optimizer.lr")
    assert lr.op == ">" and 0.0196 < float(lr.value) < 3.58
    assert "the same trials" in str(rule) and "cannot tell which" in rule.suggestion
    assert "cap optimizer.lr below" in rule.suggestion and "drop scheduler.name=cosine" in rule.suggestion
    # a region only one param explains names no alternative
    params, labels = _trials()
    assert all(not r.also for r in failure_rules(params, labels, ["diverging", "plateau"]))


def test_a_change_toward_trials_that_failed_too_says_so() -> None:
    """Measured in a 6-trial full sweep of 3 epochs: every lr ≤ 0.27 stalled and every lr above diverged.
    "raise the lower bound of optimizer.lr above 0.265" alone would send the user into the diverging trials."""
    lrs = [0.0196, 7.25e-5, 0.00428, 0.00163, 3.58, 4.6]
    params = [{"optimizer.lr": repr(lr)} for lr in lrs]
    labels = ["plateau"] * 4 + ["diverging"] * 2
    rules = {r.label: r for r in failure_rules(params, labels, ["diverging", "plateau"], "optimizer.lr")}
    assert "raise the lower bound of optimizer.lr above" in rules["plateau"].suggestion
    assert "above 0.265, though the 2 other trials failed too (2 diverging); raise the" in rules["plateau"].suggestion
    assert ", though the 4 other trials failed too (4 plateau); lower the" in rules["diverging"].suggestion
    labels[0] = "healthy"  # one trial outside the diverging region did well: no caveat there
    rules = {r.label: r for r in failure_rules(params, labels, ["diverging", "plateau"], "optimizer.lr")}
    assert "failed too" not in rules["diverging"].suggestion, rules["diverging"].suggestion


def test_an_overfit_region_whose_outside_failed_too_is_kept_not_avoided() -> None:
    """Measured in a 6-trial lr sweep of 20 epochs on 1,000 images: the lrs that learned overfit (the best
    trial among them, val_acc 0.345), those below stalled and those above diverged. The rule had said
    `avoid optimizer.lr between 0.0036 and 0.382`: away from every trial that fitted the data."""
    lrs = [2.04, 0.000499, 0.0259, 1.72e-05, 1.33, 0.0717]
    params = [{"optimizer.lr": repr(lr)} for lr in lrs]
    labels = ["diverging", "plateau", "overfit", "plateau", "diverging", "overfit"]
    failures = ["diverging", "plateau", "overfit"]
    rules = {r.label: r for r in failure_rules(params, labels, failures, "optimizer.lr")}
    overfit = rules["overfit"]
    assert str(overfit).endswith("→ overfit (2 of 2 trials)"), str(overfit)
    assert overfit.suggestion == ("keep this region, since the 4 other trials failed too (2 diverging, 2 plateau); "
                                  "add regularization or augmentation, or stop earlier"), overfit.suggestion
    assert "raise the lower bound of optimizer.lr above" in rules["plateau"].suggestion  # the others still move away
    labels[1] = "healthy"  # a trial outside fitted well without overfitting: moving toward it is a change to try
    assert "avoid optimizer.lr between" in next(r for r in failure_rules(params, labels, failures, "optimizer.lr")
                                                if r.label == "overfit").suggestion


def test_a_label_on_nearly_every_trial_is_the_whole_space_not_a_band() -> None:
    """A clip sweep at lr 0.5-5 measured here: 5 of 6 trials diverged and lr 3 stalled. The tree split at
    the stalled trial and advised `optimizer.lr ≤ 2.38 → diverging (4 of 4 trials): raise the lower bound
    of optimizer.lr above 2.38`, toward the one trial above it that diverged too."""
    lrs = [1.77, 1.33, 4.6, 1.69, 0.589, 3.0]
    clips = ["1.23", "6.07", "None", "None", "4.63", "None"]
    params = [{"optimizer.lr": repr(lr), "train.clip_theta": c} for lr, c in zip(lrs, clips)]
    labels = ["diverging"] * 5 + ["plateau"]
    rules = failure_rules(params, labels, ["diverging", "plateau"], "optimizer.lr,train.clip_theta")
    assert [str(r) for r in rules] == ["the whole search space → diverging (5 of 6 trials)"], [str(r) for r in rules]
    assert rules[0].suggestion.startswith("every part of the search space has it: move or shrink the whole space")
    every = failure_rules(params, ["diverging"] * 6, ["diverging"], "optimizer.lr,train.clip_theta")
    assert [str(r) for r in every] == ["the whole search space → diverging (6 of 6 trials)"]
