"""Simulations as evidence: which lab result decides which testable proposition, and how.

The lab (simulations/) answers a few propositions about recursive training on synthetic data. An
assertion that states one of them, affirmed or denied, gets the lab's result as a stance with its
numbers and intervals, like a paper; an assertion that states none gets no simulation stance, and
the report says so. Matching is by explicit term patterns (listed below, so a reader can check why an
assertion matched); an assertion that negates the proposition ("is NOT simply a function of the
ratio") takes the opposite stance.

| key              | proposition (affirmative)                                              | decided by |
|------------------|------------------------------------------------------------------------|------------|
| ratio            | the synthetic share itself drives collapse at a fixed amount of real data | headline boundaries: does the unbiased sampler cross? |
| sampler_bias     | the diversity / bias of the synthetic data drives collapse                | headline boundaries: do biased samplers cross while the unbiased one does not? |
| real_amount      | the absolute amount of real data sets which rare types are known          | scale test of tail coverage |
| regime           | keeping real data in training (vs replacing it) prevents collapse        | unbiased replacement's tail coverage vs the headline boundaries |
| tails_first      | recursive training loses the tails (rare types) first                    | unbiased replacement's tail coverage against real-only |
| unavoidable      | collapse under recursive training is inevitable, whatever data is kept   | tail loss under replacement, against the tails kept when real data are kept |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.assertions import Assertion
from agent.verdicts import Judged, Stance
from simulations.analysis import Boundary, SimAnalysis
from simulations.diversity import UNBIASED

_SYNTHETIC = r"(synthetic|generated|model-generated|self-generated|self-consum\w*)"
_NEGATION = re.compile(r"\b(not|no|never|nor|cannot|can't|isn't|aren't|doesn't|don't|rather than)\b", re.I)


@dataclass(frozen=True)
class Finding:
    stance: Stance  # toward the affirmative proposition
    detail: str  # the numbers, with intervals, and what was held fixed


@dataclass(frozen=True)
class Proposition:
    key: str
    statement: str
    patterns: tuple[str, ...]  # every pattern must occur in the assertion
    decide: Callable[[SimAnalysis], Finding | None]

    def matches(self, text: str) -> bool:
        return all(re.search(p, text, re.I) for p in self.patterns)


def _headline(analysis: SimAnalysis) -> tuple[list[Boundary], list[Boundary]]:
    """(unbiased, biased) boundaries of the headline fixed-real-count slices."""
    rows = [b for b in analysis.boundaries if b.hold == "real" and b.regime in analysis.headline]
    unbiased = [b for b in rows if UNBIASED.get(b.diversity_control) == b.diversity]
    return unbiased, [b for b in rows if b not in unbiased]


def _crossings(rows: list[Boundary]) -> str:
    crossed = [b for b in rows if b.status == "crossed" and b.ratio is not None]
    if not crossed:
        return "no biased sampler crossed"
    bands = [x for b in crossed for x in b.band if x is not None]
    band = f" (bootstrap band {min(bands):.2f}–{max(bands):.2f})" if bands else ""
    return (f"sharpened samplers crossed at synthetic shares {min(b.ratio for b in crossed):.2f}–"
            f"{max(b.ratio for b in crossed):.2f}{band}")


def _held(analysis: SimAnalysis) -> str:
    return "; ".join(f"{regime}: {what}" for regime, what in analysis.headline.items())


def _ratio(analysis: SimAnalysis) -> Finding | None:
    unbiased, biased = _headline(analysis)
    if not unbiased:
        return None
    top = max(b.tested[1] for b in unbiased)
    stays = all(b.status == "not_reached" for b in unbiased)
    detail = (f"at a fixed real count ({_held(analysis)}), the unbiased sampler's tail mass "
              f"{'stayed above' if stays else 'fell below'} {1 - analysis.tolerance:g} of the paired real-only model's "
              f"{'at every share up to' if stays else 'at some share up to'} {top:g}; {_crossings(biased)}")
    return Finding("contradicts" if stays else "supports", detail)


def _sampler_bias(analysis: SimAnalysis) -> Finding | None:
    unbiased, biased = _headline(analysis)
    if not unbiased or not biased:
        return None
    biased_cross = any(b.status != "not_reached" for b in biased)
    unbiased_cross = any(b.status != "not_reached" for b in unbiased)
    stance: Stance = "supports" if biased_cross and not unbiased_cross else "qualifies" if biased_cross else "contradicts"
    detail = (f"at a fixed real count ({_held(analysis)}): {_crossings(biased)}; the unbiased sampler "
              f"{'also crossed' if unbiased_cross else 'never did'}")
    return Finding(stance, detail)


def _real_amount(analysis: SimAnalysis) -> Finding | None:
    test = next((t for t in analysis.scale if t.metric == "tail_coverage"), None)
    if test is None or test.comparisons == 0:
        return None
    moved = test.not_invariant / test.comparisons
    detail = (f"at the same synthetic share, scaling the real count from {test.sizes[0]} to {test.sizes[1]} changed tail "
              f"coverage by more than {analysis.tolerance:g} in {test.not_invariant} of {test.comparisons} comparisons "
              f"(largest change {test.largest_gap:+.2f}, 95% CI {test.largest_gap_ci[0]:+.2f} to {test.largest_gap_ci[1]:+.2f})")
    return Finding("supports" if moved >= 0.5 else "contradicts" if test.invariant / test.comparisons >= 0.5 else "qualifies", detail)


def _unbiased_replace(analysis: SimAnalysis):
    """Replacement under the unbiased sampler: pure recursion, no sampler bias."""
    return [e for e in analysis.effects if e.regime == "replace" and UNBIASED.get(e.diversity_control) == e.diversity
            and e.tail_coverage_change is not None and e.relative_tail_mass is not None]


def _coverage_loss(replaced) -> tuple[bool, str]:
    """(every unbiased replacement cell lost tail coverage beyond its interval, the numbers)."""
    lost = all(e.tail_coverage_change.ci[1] < 0 for e in replaced)
    parts = [f"R = {e.real_amount}: tail coverage {e.tail_coverage_change.text()} against the real-only model, "
             f"tail mass {e.relative_tail_mass.text()} of it" for e in sorted(replaced, key=lambda e: e.real_amount)]
    return lost, "; ".join(parts)


def _replace_vs_keep(analysis: SimAnalysis) -> tuple[bool, bool, str] | None:
    """(pure recursion lost tail coverage, keeping the real data kept the tail mass, the numbers)."""
    replaced = _unbiased_replace(analysis)
    unbiased, _ = _headline(analysis)
    if not replaced or not unbiased:
        return None
    lost, numbers = _coverage_loss(replaced)
    kept = all(b.status == "not_reached" for b in unbiased)
    detail = (f"replacing the data each generation with the unbiased sampler: {numbers}; keeping the real data "
              f"({_held(analysis)}) {'kept' if kept else 'did not keep'} the tail mass above {1 - analysis.tolerance:g} "
              "of the real-only model at every tested share")
    return lost, kept, detail


def _regime(analysis: SimAnalysis) -> Finding | None:
    compared = _replace_vs_keep(analysis)
    if compared is None:
        return None
    lost, kept, detail = compared
    stance: Stance = "supports" if lost and kept else "qualifies" if lost or kept else "contradicts"
    return Finding(stance, detail)


def _tails_first(analysis: SimAnalysis) -> Finding | None:
    replaced = _unbiased_replace(analysis)
    if not replaced:
        return None
    lost, numbers = _coverage_loss(replaced)
    mass_kept = all(e.relative_tail_mass.ci[0] <= 1 <= e.relative_tail_mass.ci[1] for e in replaced)
    detail = (f"under pure recursion (replacement, unbiased sampler) {numbers}"
              + ("; rare types are lost while the tail's mass is kept on average" if lost and mass_kept else ""))
    return Finding("supports" if lost else "contradicts", detail)


def _unavoidable(analysis: SimAnalysis) -> Finding | None:
    compared = _replace_vs_keep(analysis)
    if compared is None:
        return None
    lost, kept, detail = compared
    if not lost:
        return Finding("contradicts", f"even pure recursion did not lose tail coverage beyond its interval: {detail}")
    # holds only when the data are replaced: a qualification, not a refutation of what replacement does
    return Finding("qualifies" if kept else "supports", detail)


PROPOSITIONS: tuple[Proposition, ...] = (
    Proposition("ratio", "the synthetic share itself drives collapse at a fixed amount of real data",
                (r"\b(ratio|proportion|share|fraction|percentage)\b", _SYNTHETIC,
                 r"\b(collaps\w*|degrad\w*|drives?|determin\w*|function\s+of|scales?\s+with)\b"), _ratio),
    Proposition("sampler_bias", "the diversity or sampling bias of the synthetic data drives collapse",
                (r"\b(divers\w*|tail coverage|temperature|truncat\w*|sampling bias|top-?[kp])\b",
                 r"\b(collaps\w*|degrad\w*|prevent\w*|enabl\w*|drives?)\b"), _sampler_bias),
    Proposition("real_amount", "the absolute amount of real data sets which rare types are known",
                (r"\b(amount|number|quantity|volume|size)\s+of\s+(real|human|clean|original)\b",), _real_amount),
    Proposition("regime", "keeping real data in training, rather than replacing it, prevents collapse",
                (r"\b(accumulat\w*|replac\w*|discard\w*|keep\w*\s+(the\s+)?(real|original|human))\b",
                 r"\b(collaps\w*|degrad\w*|bounded|avoid\w*|prevent\w*)\b"), _regime),
    Proposition("tails_first", "recursive training loses the tails of the distribution first",
                (r"\b(tails?|rare\s+(events|types|tokens|patterns|modes|data))\b",
                 r"\b(vanish\w*|disappear\w*|lost|los[es]\w*|erod\w*|eras\w*|first|crowd\w*\s+out)\b"), _tails_first),
    Proposition("unavoidable", "collapse under recursive training is inevitable, whatever data is kept",
                (r"\b(irreversib\w*|inevitab\w*|unavoidab\w*|inescapab\w*)\b",
                 r"\b(collaps\w*|degrad\w*|forget\w*|vanish\w*|erod\w*)\b"), _unavoidable),
)


@dataclass(frozen=True)
class SimStance:
    judged: Judged  # the stance toward the assertion
    proposition: str
    denies: bool  # the assertion negates the proposition, so the lab's finding on it was flipped
    detail: str


def stated_propositions(assertion: Assertion) -> list[tuple[Proposition, bool]]:
    """The lab's propositions the assertion states, each with whether it denies it.

    Its scope conditions are left out of the matching: "as synthetic data crowds out rare patterns,
    the model stops building structure for them" asserts something about the model's structure,
    which the lab does not measure, under a condition the lab would agree with.
    """
    text = assertion.text
    for condition in assertion.scope:
        text = text.replace(condition, " ")
    negated = bool(_NEGATION.search(text))
    return [(p, negated) for p in PROPOSITIONS if p.matches(text)]


def simulation_stances(assertion: Assertion, analysis: SimAnalysis | None,
                       stated: list[tuple[str, bool]] | None = None) -> list[SimStance]:
    """The lab's stances toward one assertion: one per proposition it states (none when it states none).
    `stated`: (key, denies) as the analyst matched them; by default the registry's own patterns."""
    if analysis is None:
        return []
    flip = {"supports": "contradicts", "contradicts": "supports"}
    by_key = {p.key: p for p in PROPOSITIONS}
    matched = ([(by_key[k], denies) for k, denies in stated if k in by_key] if stated is not None
               else stated_propositions(assertion))
    out = []
    for proposition, negated in matched:
        finding = proposition.decide(analysis)
        if finding is None:
            continue
        stance = flip.get(finding.stance, finding.stance) if negated else finding.stance
        key = f"simulations.{proposition.key}"
        out.append(SimStance(Judged(source="simulation", ref=key, stance=stance, newer_than_claim=True),
                             proposition.statement, negated, finding.detail))
    return out
