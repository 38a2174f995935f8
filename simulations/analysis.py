"""What a sweep says about ratio against sampler bias, as typed results the agent consumes.

The response. For every cell, the lab pairs each seed with the **real-only counterfactual** that saw
the same real data (common random numbers, see sampling.RealStream):

- same_real:  the same regime with no synthetic data and the cell's real count (replace: the model
              that keeps its generation-1 real data, i.e. fixed_real at ratio 0). "Does adding
              synthetic data hurt?"
- same_total: the same regime with no synthetic data and as many real samples as the cell trains on
              (real + synthetic). "What does substituting synthetic for real data cost?"

`relative_tail_mass` = tail_mass_ratio(cell) / tail_mass_ratio(same_real counterfactual), per seed,
averaged over the **stationary window** (the last quarter of the generations). Below
1 - tolerance the synthetic data have cost the tail that much of its probability mass: that is
collapse in this lab. Differences (cell - counterfactual) of forward_kl and tail_coverage are
reported beside it. Every estimate carries its mean, median and a 95 % interval over seeds.

Results:
- `CellEffect`      per cell: the response and the paired differences, with intervals.
- `Boundary`        per (family, regime, hold, bias, size): the synthetic share at which
                    relative_tail_mass crosses 1 - tolerance, interpolated between tested shares,
                    with a bootstrap band (seeds resampled, pairing kept).
- `ScaleTest`       "the ratio is what matters" as a test: f(cR, cS) = f(R, S) at the same share,
                    for relative tail mass and for tail coverage.
- `Stationarity`    per regime: whether the window is flat (last quarter vs the one before).
- `SimAnalysis`     all of the above, the pre-registered headline slice, and `result`: one sentence
                    computed from the numbers that names what was held fixed.

The headline is pre-registered, never picked by config order or by which block is largest: the
fixed-real-count slices (fixed_real: one unique real pool reused every generation; fresh: the same
real count drawn anew each generation), with the fixed-total slice beside them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel

from simulations.cells import Cell
from simulations.diversity import MORE_IS_DIVERSE, UNBIASED
from simulations.regimes import samples_per_generation

HEADLINE_REGIMES = ("fixed_real", "fresh")  # in this order of preference
BOOTSTRAP = 400
# The effects' bootstrap seed. Each analysis draws from a generator of its own, seeded with it, so the
# same runs always give the same intervals: in a new process or after other sweeps in this one.
ESTIMATE_SEED = 20261129


class Estimate(BaseModel):
    """A quantity over seeds: mean with its 95 % bootstrap interval, median, seed count."""

    mean: float
    ci: tuple[float, float]
    median: float
    seeds: int

    @classmethod
    def of(cls, values: np.ndarray, rng: np.random.Generator | None = None) -> Estimate | None:
        """None when fewer than two seeds gave a finite value (nothing to estimate). The interval is a
        percentile bootstrap of the mean over seeds: it stays inside the values' range on heavy-tailed
        responses, where mean +- 1.96 SE can leave it (a tail mass ratio below 0)."""
        values = values[np.isfinite(values)]
        if len(values) < 2:
            return None
        rng = rng if rng is not None else np.random.default_rng(ESTIMATE_SEED)
        draws = rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))
        lo, hi = np.quantile(values[draws].mean(1), [0.025, 0.975])
        return cls(mean=float(values.mean()), ci=(float(lo), float(hi)), median=float(np.median(values)), seeds=len(values))

    def text(self, digits: int = 2) -> str:
        return f"{self.mean:.{digits}f} (95% CI {self.ci[0]:.{digits}f} to {self.ci[1]:.{digits}f})"


class CellEffect(BaseModel):
    family: str
    regime: str
    hold: str
    ratio: float
    synthetic_per_real: float | None  # S / R; None for replace (no real data after generation 1)
    diversity_control: str
    diversity: float
    real_amount: int
    samples: int
    # None where no seed gave a finite value; forward_kl_change_same_total also where the two
    # counterfactuals coincide (replace).
    relative_tail_mass: Estimate | None  # vs same_real
    tail_coverage_change: Estimate | None  # cell - same_real
    forward_kl_change_same_real: Estimate | None
    forward_kl_change_same_total: Estimate | None
    stationary: bool


class Boundary(BaseModel):
    family: str
    regime: str
    hold: str
    diversity_control: str
    diversity: float
    size: int  # the real count (hold "real") or the samples per generation (hold "total")
    status: Literal["crossed", "not_reached", "below_grid"]
    ratio: float | None  # the interpolated synthetic share at the crossing; None unless crossed
    band: tuple[float | None, float | None]  # bootstrap 2.5 % / 97.5 %; None: beyond the tested shares
    tested: tuple[float, float]  # the lowest and highest synthetic share tested


class ScaleTest(BaseModel):
    """f(cR, cS) = f(R, S): the same synthetic share at the smallest and the largest real count."""

    metric: str
    comparisons: int
    invariant: int  # the 95 % interval of the gap lies within +-tolerance
    not_invariant: int  # the interval lies wholly outside +-tolerance
    undetermined: int
    largest_gap: float  # the gap of largest size (large R minus small R) ...
    largest_gap_ci: tuple[float, float]  # ... and its 95 % bootstrap interval
    sizes: tuple[int, int]


class Stationarity(BaseModel):
    regime: str
    hold: str
    generations: int
    window: tuple[int, int]  # generations averaged
    cells: int
    stationary: int  # cells whose last-quarter mean is within noise (or 0.01) of the quarter before


class SimAnalysis(BaseModel):
    response: str
    tolerance: float
    window: tuple[int, int]
    headline: dict[str, str]  # regime -> what it holds fixed
    effects: list[CellEffect]
    boundaries: list[Boundary]
    scale: list[ScaleTest]
    stationarity: list[Stationarity]
    result: str  # the lab's answer in one sentence, computed from the numbers above
    notes: list[str]


@dataclass(frozen=True)
class CellRuns:
    """One cell's per-seed metrics (name -> [seeds, generations + 1]) and what its size holds fixed."""

    cell: Cell
    hold: str
    metrics: dict[str, np.ndarray]


HELD_FIXED = {
    "fixed_real": "one unique real pool reused every generation",
    "fresh": "the same number of real samples, drawn anew each generation",
    "accumulate": "the same number of new real samples each generation, all data kept",
    "accumulate_subsample": "new real samples each generation, training on a fixed-size subsample of all data",
    "replace": "no real data after generation 1",
}


def counterfactual_cells(cell: Cell, samples: int) -> tuple[Cell, Cell]:
    """(same_real, same_total) real-only counterfactuals of a cell that trains on `samples` per generation."""
    regime = "fixed_real" if cell.regime == "replace" else cell.regime
    neutral = UNBIASED.get(cell.diversity_control, cell.diversity)
    make = lambda amount: Cell(cell.family, regime, 0.0, cell.diversity_control, neutral, amount)  # noqa: E731
    real = cell.real_amount
    return make(real), make(max(samples, real))


def _window(generations: int) -> slice:
    start = max(1, generations - max(1, generations // 4) + 1)
    return slice(start, generations + 1)


def _interpolated_crossing(ratios: np.ndarray, values: np.ndarray, threshold: float) -> tuple[str, float | None]:
    """The first share at which values fall below threshold, linear between tested shares (0 -> 1)."""
    below = np.nonzero(values < threshold)[0]
    if len(below) == 0:
        return "not_reached", None
    i = below[0]
    if i == 0:
        x0, y0 = 0.0, 1.0  # at ratio 0 the cell is its own counterfactual
    else:
        x0, y0 = ratios[i - 1], values[i - 1]
    x1, y1 = ratios[i], values[i]
    if i == 0 and ratios[0] == 0:
        return "below_grid", None
    t = (y0 - threshold) / (y0 - y1) if y0 != y1 else 0.0
    return "crossed", float(x0 + t * (x1 - x0))


def analyse(runs: list[CellRuns], generations: int, tolerance: float, seed: int) -> SimAnalysis:
    """Pair every cell with its counterfactuals and read boundaries, scale tests and the result."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty or all-NaN slices give NaN, shown as such
        return _analyse(runs, generations, tolerance, seed)


def _analyse(runs: list[CellRuns], generations: int, tolerance: float, seed: int) -> SimAnalysis:
    rng = np.random.default_rng(seed)
    estimates = np.random.default_rng(ESTIMATE_SEED)  # the effects' intervals, in the order of the cells
    window = _window(generations)
    by_cell = {r.cell: r for r in runs if r.hold == "real"}
    effects, paired = [], []
    for r in runs:
        if r.cell.ratio == 0.0 or "tail_mass_ratio" not in r.metrics:
            continue
        samples = samples_per_generation(r.cell)
        same_real, same_total = (by_cell.get(c) for c in counterfactual_cells(r.cell, samples))
        if same_real is None:
            continue
        rel = r.metrics["tail_mass_ratio"] / same_real.metrics["tail_mass_ratio"]
        per_seed = lambda a: np.nanmean(a[:, window], axis=1)  # noqa: E731
        diff = lambda name, cf: per_seed(r.metrics[name] - cf.metrics[name])  # noqa: E731
        effect = CellEffect(
            family=r.cell.family, regime=r.cell.regime, hold=r.hold, ratio=r.cell.ratio,
            synthetic_per_real=_synthetic_per_real(r.cell), diversity_control=r.cell.diversity_control,
            diversity=r.cell.diversity, real_amount=r.cell.real_amount, samples=samples,
            relative_tail_mass=Estimate.of(per_seed(rel), estimates),
            tail_coverage_change=Estimate.of(diff("tail_coverage", same_real), estimates),
            forward_kl_change_same_real=Estimate.of(diff("forward_kl", same_real), estimates),
            forward_kl_change_same_total=Estimate.of(diff("forward_kl", same_total), estimates) if same_total and same_total is not same_real else None,
            stationary=_is_stationary(rel, generations),
        )
        effects.append(effect)
        paired.append((effect, per_seed(rel), per_seed(r.metrics["tail_coverage"])))
    boundaries = _boundaries(paired, tolerance, rng)
    scale = _scale_tests(paired, tolerance, rng)
    stationarity = _stationarity(effects, generations, window)
    headline = {regime: HELD_FIXED[regime] for regime in HEADLINE_REGIMES if any(e.regime == regime and e.hold == "real" for e in effects)}
    notes = _notes(effects, stationarity) + _missed_targets(runs, window)
    return SimAnalysis(
        response=(
            "relative_tail_mass: the model's probability mass on the true tail over that of the real-only model "
            "trained on the same real data (paired seeds), averaged over generations "
            f"{window.start}-{window.stop - 1}; collapse = below {1 - tolerance:g}"
        ),
        tolerance=tolerance,
        window=(window.start, window.stop - 1),
        headline=headline,
        effects=effects,
        boundaries=boundaries,
        scale=scale,
        stationarity=stationarity,
        result=result_sentence(effects, boundaries, scale, headline, tolerance),
        notes=notes,
    )


def _synthetic_per_real(cell: Cell) -> float | None:
    return None if cell.ratio >= 1 else cell.ratio / (1 - cell.ratio)


def _is_stationary(values: np.ndarray, generations: int) -> bool:
    """The last quarter's mean is within 2 SE (or 0.01) of the quarter before it."""
    q = max(1, generations // 4)
    if generations < 2 * q + 1:
        return False
    last = np.nanmean(values[:, generations - q + 1 :], axis=1)
    before = np.nanmean(values[:, generations - 2 * q + 1 : generations - q + 1], axis=1)
    change = last - before
    change = change[np.isfinite(change)]
    if len(change) < 2:
        return False
    se = change.std(ddof=1) / math.sqrt(len(change))
    return bool(abs(change.mean()) <= max(2 * se, 0.01))


def _slices(paired, key):
    groups: dict[tuple, list] = {}
    for item in paired:
        groups.setdefault(key(item[0]), []).append(item)
    return groups


def _boundaries(paired, tolerance: float, rng: np.random.Generator) -> list[Boundary]:
    threshold = 1 - tolerance
    out = []
    slices = _slices(paired, lambda e: (e.family, e.regime, e.hold, e.diversity_control, e.diversity,
                                          e.real_amount if e.hold == "real" else e.samples))
    for (family, regime, hold, control, value, size), members in slices.items():
        if regime == "replace":
            continue  # one share (1): nothing to interpolate
        members = sorted(members, key=lambda m: m[0].ratio)
        ratios = np.array([m[0].ratio for m in members])
        per_seed = np.stack([m[1] for m in members])  # [ratios, seeds], paired across ratios
        status, ratio = _interpolated_crossing(ratios, np.nanmean(per_seed, axis=1), threshold)
        seeds = per_seed.shape[1]
        draws = rng.integers(0, seeds, size=(BOOTSTRAP, seeds))
        boot = [_interpolated_crossing(ratios, np.nanmean(per_seed[:, d], axis=1), threshold) for d in draws]
        crossing = np.array([r if s == "crossed" else (np.inf if s == "not_reached" else -np.inf) for s, r in boot])
        lo, hi = np.quantile(crossing, [0.025, 0.975])
        band = (None if not np.isfinite(lo) else float(lo), None if not np.isfinite(hi) else float(hi))
        out.append(Boundary(family=family, regime=regime, hold=hold, diversity_control=control, diversity=value,
                            size=size, status=status, ratio=ratio, band=band,
                            tested=(float(ratios.min()), float(ratios.max()))))
    return out


def _scale_tests(paired, tolerance: float, rng: np.random.Generator) -> list[ScaleTest]:
    """At each (regime, bias, share) of the fixed-real-count design, compare the smallest and largest R."""
    real = [p for p in paired if p[0].hold == "real" and p[0].regime != "replace"]
    sizes = sorted({p[0].real_amount for p in real})
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    tests = []
    for metric, column in (("relative_tail_mass", 1), ("tail_coverage", 2)):
        groups = _slices(real, lambda e: (e.family, e.regime, e.diversity_control, e.diversity, e.ratio))
        verdicts, gaps = [], []  # gaps: (gap, its interval)
        for members in groups.values():
            at = {m[0].real_amount: m[column] for m in members}
            if small not in at or large not in at:
                continue
            a, b = at[small], at[large]
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            # Bootstrap of the gap: seeds resampled independently at each size (different real data).
            boot = (b[rng.integers(0, len(b), (BOOTSTRAP, len(b)))].mean(1)
                    - a[rng.integers(0, len(a), (BOOTSTRAP, len(a)))].mean(1))
            lo, hi = np.quantile(boot, [0.025, 0.975])
            gaps.append((float(b.mean() - a.mean()), (float(lo), float(hi))))
            verdicts.append("invariant" if -tolerance <= lo and hi <= tolerance else
                            "not_invariant" if lo > tolerance or hi < -tolerance else "undetermined")
        if verdicts:
            gap, gap_ci = max(gaps, key=lambda g: abs(g[0]))
            tests.append(ScaleTest(metric=metric, comparisons=len(verdicts), invariant=verdicts.count("invariant"),
                                   not_invariant=verdicts.count("not_invariant"),
                                   undetermined=verdicts.count("undetermined"),
                                   largest_gap=gap, largest_gap_ci=gap_ci, sizes=(small, large)))
    return tests


def _stationarity(effects: list[CellEffect], generations: int, window: slice) -> list[Stationarity]:
    out = []
    for (regime, hold), members in _slices([(e,) for e in effects], lambda e: (e.regime, e.hold)).items():
        out.append(Stationarity(regime=regime, hold=hold, generations=generations, window=(window.start, window.stop - 1),
                                cells=len(members), stationary=sum(m[0].stationary for m in members)))
    return out


def _notes(effects: list[CellEffect], stationarity: list[Stationarity]) -> list[str]:
    notes = []
    for s in stationarity:
        if s.stationary == s.cells or s.regime == "replace":
            continue  # replace has one share and no boundary: its stationarity is in the table alone
        moving = s.cells - s.stationary
        held = "real count" if s.hold == "real" else "samples per generation"
        notes.append(
            f"{s.regime} ({held} held fixed): {moving} of {s.cells} cells {'was' if moving == 1 else 'were'} still "
            f"moving at generation {s.generations}; a boundary they cross is still crossed later (the tail mass only "
            "falls further under a sharpening sampler), but a 'not reached' may not hold."
        )
    return notes


MATCH_TOLERANCE = 0.05  # nats: a matched-entropy sampler further than this from its target missed it


def _missed_targets(runs: list[CellRuns], window: slice) -> list[str]:
    """Matched-entropy cells whose sampler could not reach the target (said, never clamped silently)."""
    notes = []
    for r in runs:
        if r.cell.diversity_control != "matched" or r.cell.ratio == 0 or "sampler_entropy" not in r.metrics:
            continue
        reached = float(np.nanmean(r.metrics["sampler_entropy"][:, window]))
        if abs(reached - r.cell.diversity) > MATCH_TOLERANCE:
            notes.append(f"{r.cell.regime}, share {r.cell.ratio:g}, R = {r.cell.real_amount}: the matched entropy target "
                         f"{r.cell.diversity:g} nats was missed (the sampler reached {reached:.2f}; the model's support "
                         "bounds what any temperature can reach).")
    return notes


def _bias_label(control: str, value: float) -> str:
    unbiased = UNBIASED.get(control)
    name = control.replace("_", "-")
    if unbiased is None:
        return f"{name} {value:g}"
    if value == unbiased:
        return f"the unbiased sampler ({name} {value:g})"
    sharpening = value < unbiased if MORE_IS_DIVERSE.get(control, True) else value > unbiased
    return f"a {'sharpened' if sharpening else 'flattened'} sampler ({name} {value:g})"


def _range(values: list[float], digits: int = 2) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}" if abs(hi - lo) < 10 ** -digits else f"{lo:.{digits}f}–{hi:.{digits}f}"


def _bias_order(control: str, value: float) -> tuple:
    """The unbiased sampler first, then sharpening ones from mild to strong, then flattening ones."""
    unbiased = UNBIASED.get(control)
    if unbiased is None:
        return (1, value)
    sharpening = value < unbiased if MORE_IS_DIVERSE.get(control, True) else value > unbiased
    return (value != unbiased, not sharpening, abs(value - unbiased))


def _clauses(rows: list[Boundary], tolerance: float) -> list[str]:
    """One clause per sampler setting: where the tail mass crossed 1 - tolerance, with its band."""
    parts = []
    for value in sorted({b.diversity for b in rows}, key=lambda v: _bias_order(rows[0].diversity_control, v)):
        at = [b for b in rows if b.diversity == value]
        label = _bias_label(at[0].diversity_control, value)
        crossed = [b for b in at if b.status == "crossed"]
        below = [b for b in at if b.status == "below_grid"]
        if not crossed and not below:
            parts.append(f"with {label} the stationary tail mass stayed within {tolerance:.0%} of the real-only model "
                         "at every tested share")
        elif crossed:
            bands = [x for b in crossed for x in b.band if x is not None]
            band = f" (bootstrap band {min(bands):.2f}–{max(bands):.2f})" if bands else ""
            where = "" if len(crossed) == len(at) else f" at {len(crossed)} of {len(at)} real counts"
            parts.append(f"with {label} it fell below {1 - tolerance:g} of real-only from a synthetic share of "
                         f"{_range([b.ratio for b in crossed])}{band}{where}")
        else:
            parts.append(f"with {label} it was already below {1 - tolerance:g} of real-only at the lowest tested share")
    return parts


def result_sentence(effects, boundaries, scale, headline, tolerance) -> str:
    """The lab's answer, built from the boundaries and scale tests of the pre-registered headline slices."""
    regimes = list(headline)
    if not regimes:
        return ("The grid has no fixed-real-count slice (fixed_real or fresh with hold 'real'), so the effect of the "
                "synthetic share at a fixed amount of real data was not measured.")
    first = regimes[0]
    rows = [b for b in boundaries if b.regime == first and b.hold == "real"]
    sizes = sorted({b.size for b in rows})
    top = max(b.tested[1] for b in rows)
    sentence = (
        f"Holding the real data fixed ({first}: {headline[first]}; R = {', '.join(str(s) for s in sizes)}) and adding "
        f"up to {top / (1 - top):.0f} synthetic samples per real one: " + "; ".join(_clauses(rows, tolerance)) + "."
    )
    for other in regimes[1:]:
        rows = [b for b in boundaries if b.regime == other and b.hold == "real"]
        crossed = [b.ratio for b in rows if b.status == "crossed"]
        never = sorted({_bias_label(b.diversity_control, b.diversity) for b in rows if b.status == "not_reached"
                        and all(o.status == "not_reached" for o in rows if o.diversity == b.diversity)})
        sentence += (f" In {other} ({headline[other]}) the biased samplers crossed at shares {_range(crossed)}"
                     if crossed else f" In {other} ({headline[other]}) no sampler crossed")
        sentence += (f" and {', '.join(never)} never did." if never and crossed else ".")
    tests = {t.metric: t for t in scale}
    if "relative_tail_mass" in tests:
        t = tests["relative_tail_mass"]
        sentence += (f" At the same share, scaling R and S together from R = {t.sizes[0]} to {t.sizes[1]} left the relative "
                     f"tail mass unchanged within {tolerance:g} in {t.invariant} of {t.comparisons} comparisons")
        if "tail_coverage" in tests:
            c = tests["tail_coverage"]
            sentence += (f", while tail coverage changed by more than {tolerance:g} in {c.not_invariant} of "
                         f"{c.comparisons} (largest change {c.largest_gap:+.2f}, 95% CI {c.largest_gap_ci[0]:+.2f} to "
                         f"{c.largest_gap_ci[1]:+.2f})")
        sentence += "."
    return sentence
