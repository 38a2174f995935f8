"""Render a Report to report.md, report.json and a self-contained report.html."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from agent.changes import changes_view
from agent.models import AssertionAudit, ClaimAudit, Evidence, Report
from agent.nodes.simulate import (
    band_text,
    bias_label,
    bias_order,
    crossing_text,
    headline_boundaries,
    lab_answer,
    per_real,
    size_label,
)
from simulations.analysis import Boundary, CellEffect, Estimate, SimAnalysis
from simulations.sweep import SweepResult
from tools.grounding import NOT_GROUNDED

# The order papers are listed in under an assertion: positions first, then context, then abstentions.
_STANCE_ORDER = {"supports": 0, "qualifies": 1, "contradicts": 2, "background": 3, None: 4, "unrelated": 5}
_QUOTE_KIND = {"paraphrase": "our paraphrase of the paper, not its abstract", "abstract": "from the abstract"}


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class SimSection:
    """The report's simulation section, every entry already worded from the lab's typed results."""

    result: str
    held_fixed: list[str] = field(default_factory=list)
    design: str = ""
    response: str = ""
    boundary_intro: str = ""
    boundaries: Table | None = None
    effects_intro: str = ""
    effects: Table | None = None
    scale_intro: str = ""
    scale: Table | None = None
    stationarity_intro: str = ""
    stationarity: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def label_text(label: str) -> str:
    """A verdict or durability label as words: 'partly_supported' -> 'partly supported'."""
    return label.replace("_", " ")


def stance_text(e: Evidence) -> str:
    """The stance as the report shows it; an abstention says who abstained."""
    if e.stance is not None:
        return e.stance
    return "undetermined offline" if e.judged_by == "heuristic" else "undetermined (the model abstained)"


def judged_text(e: Evidence) -> str:
    """Who judged the stance, and how sure it was (an abstention has no confidence to give)."""
    return e.judged_by if e.stance is None else f"{e.judged_by}, confidence {e.confidence:.2f}"


def why_text(e: Evidence) -> str:
    """The judge's rationale as a sentence, without the prefixes the report already shows beside it
    ('heuristic:', and 'undetermined offline:' on an abstention)."""
    text = e.rationale.strip()
    prefixes = ("heuristic:", "undetermined offline:") if e.stance is None else ("heuristic:",)
    while text.lower().startswith(prefixes):
        text = text.split(":", 1)[1].strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def title_quote(e: Evidence) -> bool:
    """The quoted passage is the paper's title, which the report already shows."""
    return bool(e.quote) and e.quote.strip() == e.title.strip()


def quote_kind(e: Evidence) -> str:
    """Where the quote comes from: our paraphrase of the paper, or its abstract."""
    return _QUOTE_KIND.get(e.quote_source or "", "from the text we hold")


@dataclass
class AssertionView:
    audit: AssertionAudit
    rests_on: str  # every source that took a position, cited ones marked; or why none did
    cited: list[Evidence]
    retrieved: list[Evidence]  # positions, then background, then undetermined
    unrelated: list[Evidence]


@dataclass
class ClaimView:
    """One claim as the report shows it: the verdict's cells and its assertions."""

    audit: ClaimAudit
    evidence: str  # the claims table's evidence cell: only supports / qualifies / contradicts
    context: str  # sources on topic that took no position, and abstentions: never counted as agreement
    judged_by: str  # who judged the stances behind the verdict
    assertions: list[AssertionView]


def _rests_on(a: AssertionAudit) -> str:
    cited = {e.arxiv_id for e in a.cited}
    parts = []
    for item in a.rests_on:
        ref, _, stance = item.rpartition(" ")
        parts.append(f"{ref} {stance}" + (" (cited)" if ref in cited else ""))
    return ", ".join(parts)


def _judges(judged: list[Evidence]) -> str:
    kinds = sorted({e.judged_by for e in judged})
    return {("heuristic",): "heuristic", ("model",): "model"}.get(tuple(kinds), " and ".join(kinds) or "none")


def claim_view(c: ClaimAudit) -> ClaimView:
    views, cells = [], []
    background = undetermined = 0
    judged: list[Evidence] = []
    for a in c.assertions:
        sources = [*a.evidence, *a.cited]
        judged += sources
        background += sum(e.stance == "background" for e in sources)
        undetermined += sum(e.stance is None for e in sources)
        rests = _rests_on(a)
        if rests:
            cells.append(f"{a.id}: {rests}")
        ordered = sorted(a.evidence, key=lambda e: (_STANCE_ORDER[e.stance], -e.score))
        views.append(AssertionView(
            audit=a, rests_on=rests, cited=a.cited,
            retrieved=[e for e in ordered if e.stance != "unrelated"],
            unrelated=[e for e in ordered if e.stance == "unrelated"],
        ))
    context = (f"{background} background (on topic, no position); {undetermined} undetermined"
               if judged else "no source judged")
    return ClaimView(audit=c, evidence="; ".join(cells) or "none takes a position", context=context,
                     judged_by=_judges(judged), assertions=views)


def _estimate(e: Estimate | None, digits: int) -> str:
    """mean [95% CI]; every number the section shows carries its interval."""
    if e is None or not math.isfinite(e.mean):
        return "n/a (fewer than 2 seeds with a finite value)"
    lo, hi = e.ci
    return f"{_num(e.mean, digits)} [{_num(lo, digits)}, {_num(hi, digits)}]"


def _num(x: float, digits: int) -> str:
    """x to `digits` decimals, never '-0.000'."""
    text = f"{x:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def _median(e: Estimate | None) -> str:
    return _num(e.median, 3) if e is not None and math.isfinite(e.median) else "n/a"


def _design(sweep: SweepResult) -> str:
    c = sweep.config
    shares = sorted(set(c.ratios))
    top = max((r for r in shares if r < 1), default=0.0)
    amounts = ", ".join(str(a) for a in c.real_amounts)
    sizes = {"real": f"real count R = {amounts}, held fixed as the share varies",
             "total": f"samples per generation M = {amounts}, held fixed as the share varies (the fixed-total slice)"}
    biases = sorted(c.diversity, key=lambda v: bias_order(c.diversity_control, v))
    parts = [
        f"model {'family' if len(c.families) == 1 else 'families'} {', '.join(c.families)}, against a known truth",
        f"regimes {', '.join(c.regimes)}",
        f"sampler bias {', '.join(bias_label(c.diversity_control, v) for v in biases)}",
        *(sizes[h] for h in c.holds),
        f"synthetic shares {', '.join(f'{r:g}' for r in shares)} (up to {per_real(top)} synthetic samples per real "
        "one in the mixing regimes; replace trains on synthetic data alone)",
        f"{c.generations} generations, {c.seeds} paired seeds (the same real draws in every cell)",
    ]
    if c.family_grids:
        parts.append(f"{', '.join(c.family_grids)} on {'its' if len(c.family_grids) == 1 else 'their'} own smaller grid")
    return "; ".join(parts) + "."


def _boundaries(analysis: SimAnalysis) -> Table:
    headline = headline_boundaries(analysis)
    rest = [b for b in analysis.boundaries if b not in headline]
    rows = []
    for b in headline + sorted(rest, key=lambda b: (b.hold, b.regime, bias_order(b.diversity_control, b.diversity), b.size)):
        status = {"crossed": "crossed", "not_reached": "not reached", "below_grid": "below the grid"}[b.status]
        rows.append([
            b.regime + (" (headline)" if b in headline else ""),
            "real count" if b.hold == "real" else "samples per generation",
            bias_label(b.diversity_control, b.diversity),
            size_label(b),
            status,
            crossing_text(b) + _bracket(analysis, b),
            band_text(b),
        ])
    return Table(["regime", "held fixed", "sampler bias", "size", "status", "crossing share", "95% bootstrap band"], rows)


def _bracket(analysis: SimAnalysis, b: Boundary) -> str:
    """Which tested shares a crossing was read between (share 0: the real-only model itself)."""
    if b.status != "crossed" or b.ratio is None:
        return ""
    size = lambda e: e.real_amount if e.hold == "real" else e.samples  # noqa: E731
    shares = sorted({0.0} | {e.ratio for e in analysis.effects
                             if (e.family, e.regime, e.hold, e.diversity_control, e.diversity, size(e))
                             == (b.family, b.regime, b.hold, b.diversity_control, b.diversity, b.size)})
    below = max((r for r in shares if r <= b.ratio), default=0.0)
    above = min((r for r in shares if r > b.ratio), default=None)
    return f", read between tested shares {below:g} and {above:g}" if above is not None else ""


def _headline_effects(analysis: SimAnalysis) -> list[CellEffect]:
    """Per headline regime, its highest tested share: every sampler bias at every real count."""
    regimes = list(analysis.headline)
    out = []
    for regime in regimes:
        members = [e for e in analysis.effects if e.regime == regime and e.hold == "real"]
        if members:
            top = max(e.ratio for e in members)
            out += sorted((e for e in members if e.ratio == top),
                          key=lambda e: (bias_order(e.diversity_control, e.diversity), e.real_amount))
    return out


def _effects(analysis: SimAnalysis) -> Table:
    rows = [
        [
            e.regime,
            bias_label(e.diversity_control, e.diversity),
            str(e.real_amount),
            f"{e.ratio:g} ({per_real(e.ratio)} per real)",
            _estimate(e.relative_tail_mass, 3),
            _median(e.relative_tail_mass),
            _estimate(e.tail_coverage_change, 3),
            _estimate(e.forward_kl_change_same_real, 3),
            _estimate(e.forward_kl_change_same_total, 3),
        ]
        for e in _headline_effects(analysis)
    ]
    header = ["regime", "sampler bias", "R", "synthetic share", "relative tail mass, mean [95% CI]", "median",
              "tail coverage change [95% CI]", "forward KL change vs same real count [95% CI]",
              "forward KL change vs same total [95% CI]"]
    return Table(header, rows)


def _scale(analysis: SimAnalysis) -> Table:
    names = {"relative_tail_mass": "relative tail mass", "tail_coverage": "tail coverage"}
    rows = [
        [names.get(t.metric, t.metric), f"R = {t.sizes[0]} vs R = {t.sizes[1]}", str(t.comparisons), str(t.invariant),
         str(t.not_invariant), str(t.undetermined)]
        for t in analysis.scale
    ]
    return Table(["response", "compared", "comparisons", f"unchanged within ±{analysis.tolerance:g}",
                  f"changed by more than {analysis.tolerance:g}", "undetermined"], rows)


def sim_section(sweep: SweepResult) -> SimSection:
    analysis = sweep.analysis
    section = SimSection(result=lab_answer(analysis), design=_design(sweep))
    if analysis is None:
        return section
    threshold = 1 - analysis.tolerance
    section.held_fixed = [f"{regime}: {held}" for regime, held in analysis.headline.items()]
    section.response = analysis.response
    if analysis.boundaries:
        section.boundary_intro = (
            f"The synthetic share at which the stationary relative tail mass falls below {threshold:g}, read "
            "linearly between tested shares (at share 0 the model is its own real-only counterfactual, so the "
            "response is 1 there), with a 95% bootstrap band over seeds (pairing with the counterfactual kept). "
            "Headline rows first."
        )
        section.boundaries = _boundaries(analysis)
    if analysis.effects and analysis.headline:
        section.effects_intro = (
            f"The headline regimes at their highest tested share. Relative tail mass: the model's probability mass "
            f"on the true tail over that of the real-only model trained on the same real data, per seed, averaged "
            f"over generations {analysis.window[0]}–{analysis.window[1]} (below {threshold:g} counts as collapse). "
            "Changes are cell minus counterfactual, averaged over the same generations: vs same real count, the "
            "real-only model with the same real data; vs same total, the real-only model trained on as many real "
            "samples as the cell trains on in all."
        )
        section.effects = _effects(analysis)
    if analysis.scale:
        section.scale_intro = (
            "“Only the ratio matters” as a test: at each regime, sampler bias and share, the stationary response at "
            "the smallest and the largest real count (the synthetic count scaled with it). A comparison counts as "
            f"unchanged when the 95% bootstrap interval of the gap lies within ±{analysis.tolerance:g}, as changed "
            "when it lies wholly outside."
        )
        section.scale = _scale(analysis)
    section.stationarity_intro = (
        f"Whether each cell's relative tail mass had settled by generation {sweep.config.generations}: a cell counts "
        f"as flat when its mean over generations {analysis.window[0]}–{analysis.window[1]} lies within 2 SE (or 0.01) "
        "of its mean over the quarter before."
    )
    held = lambda s: ("synthetic data only after generation 1" if s.regime == "replace"  # noqa: E731
                      else f"{'real count' if s.hold == 'real' else 'samples per generation'} held fixed")
    section.stationarity = [f"{s.regime} ({held(s)}): {s.stationary} of {s.cells} cells flat" for s in analysis.stationarity]
    section.notes = list(analysis.notes)
    return section


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("agent.report", "templates"),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x: f"{x:.0%}"
    env.filters["cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    env.filters["label"] = label_text
    env.filters["stance"] = stance_text
    env.filters["judged"] = judged_text
    env.filters["why"] = why_text
    env.filters["quote_kind"] = quote_kind
    env.tests["title_quote"] = title_quote
    return env


def write_report(report: Report, out_dir: Path, figures: list[str], sweep: SweepResult | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    context = {
        "r": report,
        "flagged": [
            (where, c)
            for where, checks in [*((a.id, a.citations) for a in report.claims), ("anchor list", report.anchor_citations)]
            for c in checks
            if c.status in NOT_GROUNDED
        ],
        "claims": [claim_view(c) for c in report.claims],
        "sim": sim_section(sweep) if sweep is not None else None,
        "figures": [Path(f) for f in figures],
        "changes": changes_view(report.what_changed) if report.what_changed else None,
    }
    md = out_dir / "report.md"
    md.write_text(_environment(autoescape=False).get_template("report.md.j2").render(**context), encoding="utf-8")
    js = out_dir / "report.json"
    js.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    embedded = {Path(f).name: base64.b64encode(Path(f).read_bytes()).decode() for f in figures}
    html = out_dir / "report.html"
    html.write_text(
        _environment(autoescape=True).get_template("report.html.j2").render(**context, embedded=embedded),
        encoding="utf-8",
    )
    return [md, js, html, *map(Path, figures)]
