"""The decision rule (domain/policy.py): every branch, and the rule walked through every position of a
series on abstract distributions (the references as the pipeline moves them)."""
from __future__ import annotations

import numpy as np
import pytest

from domain import policy
from domain.policy import Action

THRESHOLD = 0.2
DEPLOY = {"alpha": 0.05, "resamples": 2000}


def test_the_three_actions_are_the_checkers_values():
    assert {action.value for action in Action} == {"retrained", "none", "skipped"}


def test_invalid_is_skipped_and_trains_nothing():
    for has_model in (False, True):
        decision = policy.decide(False, has_model, None)
        assert decision.action is Action.SKIPPED and not decision.train and not decision.first_model


def test_the_first_model_is_retrained_and_says_so():
    decision = policy.decide(True, False, None)
    assert decision.action is Action.RETRAINED and decision.train and decision.first_model


def test_drift_retrains_and_no_drift_does_nothing():
    drifted = policy.drift_verdict({policy.PREVIOUS: 0.5, policy.INITIAL: 1.0}, THRESHOLD)
    stable = policy.drift_verdict({policy.PREVIOUS: 0.0}, THRESHOLD)
    assert policy.decide(True, True, drifted).action is Action.RETRAINED
    assert policy.decide(True, True, drifted).train and not policy.decide(True, True, drifted).first_model
    assert policy.decide(True, True, stable).action is Action.NONE and not policy.decide(True, True, stable).train


def test_a_valid_version_with_a_model_needs_a_drift_verdict():
    with pytest.raises(ValueError):
        policy.decide(True, True, None)


@pytest.mark.parametrize(("scores", "detected", "score"), [
    ({"previous": 1.0, "initial": 1.0, "deployed": 0.67}, True, 0.67),
    ({"previous": 0.0}, False, 0.0),                        # the same drift again: like the previous period
    ({"previous": 1.0, "initial": 0.0}, False, 0.0),        # a return: like the initial world
    ({"previous": 1.0, "initial": 0.5, "deployed": 0.0}, False, 0.0),  # like what the deployed model learnt
    ({"previous": 0.67, "initial": 0.34}, True, 0.34),      # the deployed model learnt from the initial catalog
    ({"previous": 1.0, "initial": 0.2}, False, 0.2),        # at the threshold is not above it
    ({"previous": None, "initial": 0.5}, True, 0.5),        # no previous period yet
    ({}, False, 0.0),                                       # nothing to compare (no new transactions)
])
def test_drift_only_if_unlike_every_reference(scores, detected, score):
    verdict = policy.drift_verdict(scores, THRESHOLD)
    assert verdict.detected is detected and verdict.score == score and verdict.threshold == THRESHOLD
    assert verdict.scores == {k: v for k, v in scores.items() if v is not None}
    assert verdict.to_dict()["rule"] == policy.DRIFT_RULE


def deploy(candidate: list[float], deployed: list[float] | None, params: dict, seed: int) -> policy.DeployDecision:
    """The decision on AP lists keyed by their position (the hold-out's query keys)."""
    return policy.deploy_decision(dict(enumerate(candidate)), None if deployed is None else dict(enumerate(deployed)),
                                  params, seed)


def test_deploy_the_first_model():
    assert deploy([0.1, 0.2], None, DEPLOY, seed=1).deploy


def test_deploy_a_better_or_noisily_worse_model_and_keep_a_clearly_worse_one():
    deployed = [0.30, 0.10, 0.0, 0.50, 0.20, 0.05, 0.0, 0.40, 0.25, 0.15] * 6      # 60 offers
    better = [ap + 0.05 for ap in deployed]
    # Worse on average by 0.01, but up on half the offers and down on the other: noise.
    noisy = [ap + (0.08 if i % 2 else -0.1) for i, ap in enumerate(deployed)]
    worse = [max(0.0, ap - 0.1) for ap in deployed]
    assert deploy(better, deployed, DEPLOY, seed=1).deploy
    kept_noise = deploy(noisy, deployed, DEPLOY, seed=1)
    assert kept_noise.mean_difference < 0 and kept_noise.upper_bound >= 0 and kept_noise.deploy
    clearly = deploy(worse, deployed, DEPLOY, seed=1)
    assert clearly.upper_bound < 0 and not clearly.deploy and "kept the deployed model" in clearly.reason
    assert clearly.offers == 60 and clearly.candidate_ap[:2] == [0.2, 0.0] and clearly.deployed_ap[0] == 0.3


def test_the_deploy_test_is_paired_by_offer():
    # Offers differ wildly in difficulty, the candidate is a little worse on every one of them: only
    # a paired test sees it (the two means' difference is tiny next to the spread between offers).
    deployed = [0.9, 0.01, 0.5, 0.02, 0.7, 0.03, 0.3, 0.04] * 5
    candidate = [ap - 0.01 for ap in deployed]
    assert not deploy(candidate, deployed, DEPLOY, seed=3).deploy


def test_the_deploy_test_is_deterministic_and_checks_its_inputs():
    deployed, candidate = [0.1, 0.3, 0.0, 0.2], [0.05, 0.35, 0.0, 0.1]
    assert deploy(candidate, deployed, DEPLOY, 7) == deploy(candidate, deployed,
                                                                                          DEPLOY, 7)
    assert deploy([], [], DEPLOY, 7).deploy  # no hold-out offer: nothing says it is worse
    with pytest.raises(ValueError):
        deploy([0.1], [0.1, 0.2], DEPLOY, 7)
    # Pairs by offer, not by position.
    assert policy.deploy_decision({5: 0.2, 9: 0.4}, {9: 0.4, 5: 0.2}, DEPLOY, 7).mean_difference == 0


def test_bootstrap_means_resample_the_paired_differences():
    difference = np.array([0.3, -0.1, 0.0, 0.2, -0.05])
    means = policy.bootstrap_means(difference, 2000, seed=4)
    assert means.shape == (2000,) and np.array_equal(means, policy.bootstrap_means(difference, 2000, seed=4))
    # Each resample's mean lies between the smallest and largest difference, centred on their mean.
    assert means.min() >= -0.1 and means.max() <= 0.3 and abs(means.mean() - difference.mean()) < 0.01
    assert np.allclose(policy.bootstrap_means(np.full(7, 0.02), 100, seed=4), 0.02)  # nothing varies: no spread


def test_the_judged_period_moves_only_with_new_transactions():
    period = policy.judged_period(None, "v1", {"transaction": ["2024-06-01", "2025-05-31"]})
    assert period == {"version": "v1", "transaction": ["2024-06-01", "2025-05-31"]}
    assert policy.judged_period(period, "v2", {}) is period  # a re-send with nothing new
    moved = policy.judged_period(period, "v3", {"transaction": ["2025-06-01", "2025-06-30"],
                                                "receipts": ["2025-06-01", "2025-06-29"]})
    assert moved["version"] == "v3" and moved["receipts"] == ["2025-06-01", "2025-06-29"]


# The rule over whole series, on abstract distributions: a version is its world ("A" usual, "B", "C"
# moved ones; "X" a corrupted delivery). A comparison scores 1 between different worlds and 0 between
# equal ones. The previous period is the last valid version's world; the initial world is "A"; the
# deployed model's catalog is the usual world's year plus the few months it was retrained on, so, as a
# world, "A" too (the data tests, bench/decisions.py, measure the real mixtures).
def walk(worlds: list[str], deploy: bool = True) -> list[str]:
    model = previous = None
    actions = []
    for world in worlds:
        if world == "X":
            actions.append(policy.decide(False, model is not None, None).action.value)
            continue
        verdict = None
        if model is not None:
            verdict = policy.drift_verdict({policy.PREVIOUS: float(world != previous),
                                            policy.INITIAL: float(world != "A")}, THRESHOLD)
        decision = policy.decide(True, model is not None, verdict)
        if decision.train and (deploy or model is None):
            model = world
        previous = world
        actions.append(decision.action.value)
    return actions


@pytest.mark.parametrize("deploy", [True, False])
@pytest.mark.parametrize(("worlds", "expected"), [
    ("AAA", "R N N"),                 # normal after normal
    ("AAAB", "R N N R"),              # a drift after two normal versions
    ("AABB", "R N R N"),              # the same drift again: the world stays moved
    ("AABBB", "R N R N N"),
    ("AABA", "R N R N"),              # a return to the usual world
    ("AABC", "R N R R"),              # another drift right after a drift
    ("AAXA", "R N S N"),              # a normal version right after a corrupted one
    ("AAXB", "R N S R"),              # a drift right after a corrupted one
    ("AABXB", "R N R S N"),           # a corrupted version inside a lasting drift
    ("AABXA", "R N R S N"),
])
def test_every_position_comes_out_right(worlds, expected, deploy):
    names = {"R": "retrained", "N": "none", "S": "skipped"}
    assert walk(list(worlds), deploy) == [names[a] for a in expected.split()]
