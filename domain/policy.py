"""What the pipeline does with a version: one decision rule, as pure functions.

    invalid                  -> skipped    nothing trained; no catalog is published, so the next version
                                           is judged against the last valid catalog, never this one
    valid, no model yet      -> retrained  the first model (`first_model` says so)
    valid, drift             -> retrained  the new model deployed unless it is worse beyond the noise
    valid, no drift          -> none

Drift (`drift_verdict`). A version drifts only if its new part (quality/new_part.py) is like none of
the worlds the service already knows:
  - "previous": the most recently judged valid period (the new part of the last valid version, as the
    catalog holds it): a drift that persists is the world as it now is;
  - "initial": what the first model learnt from (the first catalog a model was trained on): the world
    as the service first knew it, which a drift may return to;
  - "deployed": what the deployed model learnt from, when that is another catalog: a world the model
    was retrained for.
drift_score is the smallest of the scores, so drift_detected = drift_score > threshold. With A the usual
world and B, C moved ones, every position comes out as the world says:
  - normal after normal (A after A): like the previous period and the initial world  -> none
  - a drift after normal versions (B after A, A): unlike every one                   -> retrained
  - the same drift again (B after B: the world stays moved): like the previous period -> none
  - a return (A after B, however long B lasted): like the initial world               -> none
  - another drift (C after B): unlike every one                                       -> retrained
  - after a corrupted version: that version reached no catalog and no period, so the version after
    it is judged against the last valid ones: A -> none, B (the world moved meanwhile) -> retrained
  - after a retrain whose model was not deployed: the previous period is the drifted one, so the same
    distribution again is not a drift; one noisy hold-out comparison costs nothing downstream.
Why not fewer. The previous period alone flags every return to the usual world. The deployed model's
data alone flags every version of a lasting drift (its catalog is still mostly the usual world after a
retrain on the first drifted month), and once several drifted months are in it, a return to the usual
world can read as unlike it too. The rule's blind spot is a slow drift whose every monthly step stays
under the threshold.

Deploy (`deploy_decision`). The candidate and the deployed model are scored on the same hold-out
offers (AP@100 per offer, paired). The candidate is deployed unless it is worse beyond the noise of
that hold-out: a paired bootstrap of the mean difference (candidate - deployed) over offers, with a
fixed seed; the deployed model is kept only when even the optimistic end of the one-sided interval,
the (1 - alpha) quantile of the resampled mean differences, is below zero. A bootstrap of the mean
rather than a Wilcoxon signed-rank test because MAP is a mean of per-offer AP: the bootstrap judges
that very quantity, while Wilcoxon judges whether the differences are centred on zero and must drop
or split the many ties of offers where both models score 0. Pairing by offer cancels how hard each
offer is, the largest source of variance between offers.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

# The references a version's new part is compared with, in the order they are compared.
PREVIOUS = "previous"
INITIAL = "initial"
DEPLOYED = "deployed"
REFERENCES = (PREVIOUS, INITIAL, DEPLOYED)
DRIFT_RULE = ("drift iff the new part is unlike every known world: the most recently judged valid period, what "
              "the first model learnt from, and what the deployed model learnt from; drift_score = the smallest "
              "score > threshold")
DEPLOY_RULE = ("deploy unless the candidate is worse beyond the hold-out's noise: keep the deployed model only if "
               "the (1 - alpha) quantile of a paired bootstrap of mean(AP@100 candidate - deployed) over the same "
               "hold-out offers is below 0")


class Action(str, enum.Enum):
    """The three values of `action_taken`."""

    RETRAINED = "retrained"
    NONE = "none"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class DriftVerdict:
    detected: bool
    score: float                         # the score the rule compares with the threshold
    threshold: float
    scores: dict[str, float]             # per reference compared
    rule: str = DRIFT_RULE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_verdict(scores: dict[str, float | None], threshold: float) -> DriftVerdict:
    """The drift rule: drift only if the new part is unlike every reference it was compared with. A
    reference that does not exist (no previous period yet; the deployed model learnt from the initial
    catalog) is left out (absent or None); the comparisons stop at the first reference it is like."""
    compared = {name: float(score) for name, score in scores.items() if score is not None}
    score = min(compared.values()) if compared else 0.0
    return DriftVerdict(detected=bool(compared) and score > threshold, score=score, threshold=float(threshold),
                        scores=compared)


def judged_period(current: dict[str, Any] | None, version: str,
                  new_period: dict[str, list[str]]) -> dict[str, Any] | None:
    """The most recently judged valid period once `version` is in the catalog: its own new period if it
    brought new transactions (per dated table, first and last day), else the one before stays."""
    if new_period.get("transaction"):
        return {"version": version, **{table: list(days) for table, days in new_period.items()}}
    return current


@dataclass(frozen=True)
class Decision:
    action: Action
    train: bool
    first_model: bool
    reason: str


def decide(valid: bool, has_model: bool, drift: DriftVerdict | None) -> Decision:
    """What to do with a version, from its validation, whether a model is deployed, and its drift."""
    if not valid:
        return Decision(Action.SKIPPED, train=False, first_model=False,
                        reason="invalid: nothing trained; the next version is judged against the last valid catalog")
    if not has_model:
        return Decision(Action.RETRAINED, train=True, first_model=True, reason="first model")
    if drift is None:
        raise ValueError("a valid version with a deployed model needs a drift verdict")
    if drift.detected:
        return Decision(Action.RETRAINED, train=True, first_model=False,
                        reason=f"drift: score {drift.score:.3f} > threshold {drift.threshold:g}")
    return Decision(Action.NONE, train=False, first_model=False,
                    reason=f"no drift: score {drift.score:.3f} <= threshold {drift.threshold:g}")


@dataclass(frozen=True)
class DeployDecision:
    deploy: bool
    reason: str
    offers: int = 0
    mean_difference: float | None = None     # mean AP@100, candidate - deployed
    upper_bound: float | None = None         # (1 - alpha) quantile of the bootstrapped mean difference
    alpha: float | None = None
    resamples: int | None = None
    rule: str = DEPLOY_RULE
    candidate_ap: list[float] = field(default_factory=list)
    deployed_ap: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_means(difference: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` seeded resamples (with replacement) of the paired per-offer differences: the
    spread of the mean difference that the choice of offers alone would give."""
    picks = np.random.default_rng(seed).integers(0, difference.size, size=(resamples, difference.size))
    return difference[picks].mean(axis=1)


def deploy_decision(candidate_ap: Mapping[int, float] | None, deployed_ap: Mapping[int, float] | None,
                    params: dict[str, Any], seed: int) -> DeployDecision:
    """Deploy the candidate unless it is worse than the deployed model beyond the hold-out's noise.
    `candidate_ap` and `deployed_ap`: AP@100 of each model by hold-out offer (the same offers for both);
    `deployed_ap` None: nothing to compare with (no model deployed yet, or one of another feature set,
    which cannot score these features)."""
    if deployed_ap is None:
        return DeployDecision(True, "nothing to compare with (first model, or the deployed one has another "
                                    "feature set): deployed")
    candidate_ap = candidate_ap or {}
    if set(candidate_ap) != set(deployed_ap):
        raise ValueError(f"the two models were scored on different hold-out offers: "
                         f"{len(candidate_ap)} vs {len(deployed_ap)}")
    offers = sorted(candidate_ap)
    candidate = np.array([candidate_ap[offer] for offer in offers], dtype=float)
    deployed = np.array([deployed_ap[offer] for offer in offers], dtype=float)
    lists = {"candidate_ap": [round(v, 6) for v in candidate.tolist()],
             "deployed_ap": [round(v, 6) for v in deployed.tolist()]}
    if candidate.size == 0:
        return DeployDecision(True, "no hold-out offer to compare on: the model trained on the drifted data is "
                                    "deployed", **lists)
    alpha, resamples = float(params["alpha"]), int(params["resamples"])
    difference = candidate - deployed
    upper = float(np.quantile(bootstrap_means(difference, resamples, seed), 1 - alpha))
    mean = float(difference.mean())
    deploy = upper >= 0
    reason = (f"MAP@100 {candidate.mean():.4f} vs deployed {deployed.mean():.4f} on the same {difference.size} "
              f"hold-out offers: mean difference {mean:+.4f}, {1 - alpha:.0%} one-sided upper bound {upper:+.4f}: "
              + ("deployed" if deploy else "worse beyond the hold-out's noise, kept the deployed model"))
    return DeployDecision(deploy, reason, offers=int(difference.size), mean_difference=round(mean, 6),
                          upper_bound=round(upper, 6), alpha=alpha, resamples=resamples, **lists)
