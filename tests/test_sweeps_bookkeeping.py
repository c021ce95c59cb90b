"""The sweep's bookkeeping without training: the trial budget, re-runs of interrupted trials, trial lines."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from sweeps.budget import FAILURE_ATTR, RETRY_ATTR, interrupted, queue_retries, repeated_failure, spent

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _fail(study: optuna.Study, failure: str | None, error: str | None = None) -> None:
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1, log=True)
    if failure is not None:
        trial.set_user_attr(FAILURE_ATTR, failure)
    if error is not None:
        trial.set_user_attr("error", error)
    study.tell(trial, state=TrialState.FAIL)


def test_a_run_of_trials_failing_alike_is_found_and_anything_else_breaks_it() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    boom = "RuntimeError: boom"
    for _ in range(2):
        _fail(study, "exception", boom)
    assert repeated_failure(study.get_trials(), 3) is None  # two are not three
    _fail(study, "exception", boom)
    assert repeated_failure(study.get_trials(), 3) == boom and repeated_failure(study.get_trials(), 0) is None
    _fail(study, "oom", "OutOfMemory: CUDA out of memory")  # another error: its params may be to blame
    assert repeated_failure(study.get_trials(), 3) is None
    for failure in ("exception", "exception", "interrupted"):  # Ctrl-C ends a run of them: not the trial's doing
        _fail(study, failure, boom)
    assert repeated_failure(study.get_trials(), 3) is None
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1, log=True), n_trials=1)
    assert repeated_failure(study.get_trials(), 1) is None  # the last trial completed


def test_only_trials_that_failed_by_themselves_count_and_interrupted_ones_run_again() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1, log=True), n_trials=2)
    _fail(study, "exception")  # its params would fail again: it counts
    _fail(study, "oom")
    _fail(study, "interrupted")  # Ctrl-C, or a store that failed
    _fail(study, None)  # its process died: nobody said why
    trials = study.get_trials()
    assert [interrupted(t) for t in trials] == [False, False, False, False, True, True]
    assert [t.number for t in spent(trials)] == [0, 1, 2, 3]

    assert queue_retries(study, lambda params: True) == ([4, 5], [])
    assert queue_retries(study, lambda params: True) == ([], [])  # queued once, however often the sweep resumes
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[RETRY_ATTR] for t in waiting] == [4, 5]
    assert len(spent(study.get_trials())) == 4  # queued, not started: not spent yet

    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1, log=True), n_trials=2)  # ask() hands the queue out first
    again = study.get_trials()[6:]
    assert [t.params for t in again] == [trials[4].params, trials[5].params]
    assert len(spent(study.get_trials())) == 6




def test_an_interrupted_trial_outside_a_narrowed_space_is_not_run_again() -> None:
    from sweeps.space import SearchSpace

    study = optuna.create_study()
    for lr in (0.2, 0.07):  # both interrupted (their process died)
        study.enqueue_trial({"optimizer.lr": lr})
        trial = study.ask()
        trial.suggest_float("optimizer.lr", 1e-4, 1, log=True)
        study.tell(trial, state=TrialState.FAIL)
    narrowed = SearchSpace.from_config({"optimizer": {"lr": {"type": "float", "low": 0.05, "high": 0.1, "log": True}}})
    assert queue_retries(study, narrowed.contains) == ([1], [0])
    assert study.get_trials(states=(TrialState.WAITING,))[0].user_attrs[RETRY_ATTR] == 1


def test_a_trial_line_says_which_optional_knobs_are_off() -> None:
    """The reg sweep's trial with both penalties off printed no params at all."""
    from sweeps.report import params_text

    assert params_text({"train.l1.on": False, "train.l2.on": True, "train.l2": 0.000114}) == "train.l1=off  train.l2=0.000114"
