"""Stage 5: run the simulation lab when, and only when, an assertion states a proposition it tests.

Which propositions the lab decides, and how, is agent/sim_evidence.py's registry. An inquiry none
of whose assertions states one gets no simulations, and the report says so in one line;
`--sim-budget none` skips them explicitly.

The lab's result travels through the graph state as plain data and is read back, typed, in one
place: `sweep_result(state)`. Everything downstream (synthesize, the report) reads the lab's own
models (`SweepResult`, `SimAnalysis`, `Boundary`, ...), never dict keys.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_stream_writer

from agent.services import services_for
from agent.sim_evidence import stated_propositions
from agent.state import AuditState
from simulations.analysis import Boundary, SimAnalysis
from simulations.diversity import MORE_IS_DIVERSE, UNBIASED
from simulations.sweep import SweepConfig, SweepResult, run_sweep


def run_simulations(state: AuditState) -> dict:
    run = state["run"]
    matched = state.get("propositions")  # the analyst's matches (absent in runs checkpointed before them)
    stated = {a.id: [key for key, _ in matched[a.id]] if matched is not None and a.id in matched
              else [p.key for p, _ in stated_propositions(a)]
              for c in state["inquiry"].claims for a in state["assertions"][c.id]}
    bearing = {assertion: keys for assertion, keys in stated.items() if keys}
    plan: dict[str, Any] = {"budget": run.sim_budget, "informs_assertions": bearing}
    if run.sim_budget == "none":
        return {"simulation": {"plan": plan, "skipped": "Simulations were skipped (--sim-budget none)."}}
    if not bearing:
        return {"simulation": {"plan": plan, "skipped": (
            f"No simulation in the lab bears on this inquiry: none of its {len(stated)} assertions states a "
            "proposition the lab tests, so none was run.")}}
    config = SweepConfig.budget(run.sim_budget, seed=run.seed, device=run.device)
    writer = get_stream_writer()
    result = run_sweep(
        config,
        cache_dir=services_for(run).sim_cache_dir,  # a replay's: the recorded sweep (agent/replay.py)
        progress=lambda done, total: writer({"simulation": [done, total]}),
    )
    # The figures are drawn with the report (agent/nodes/report.py), into the folder it publishes whole.
    return {"simulation": {"plan": plan, "result": state_form(result)}}


def state_form(result: SweepResult) -> dict[str, Any]:
    """The result as plain data for the checkpointed state.

    Python mode, not JSON mode: a float JSON cannot hold (an infinity or NaN anywhere in the lab's
    numbers) would come back as null and the typed read in `sweep_result` would refuse it; msgpack,
    which the checkpointer uses, keeps it exactly.
    """
    return result.model_dump()


def sweep_result(state: AuditState) -> SweepResult | None:
    """The lab's result held in the graph state, validated back into its typed form; None when skipped."""
    held = state["simulation"].get("result")
    return SweepResult.model_validate(held) if held is not None else None


def skipped_because(state: AuditState) -> str | None:
    """Why no simulation ran (one line for the report), or None when the lab ran."""
    return state["simulation"].get("skipped")


def sim_analysis(state: AuditState) -> SimAnalysis | None:
    """The lab's analysis; None when the lab did not run or no family in the sweep measures the tail."""
    result = sweep_result(state)
    return result.analysis if result is not None else None


# --- reading the lab's results: one wording for the report, the bottom line and the questions ---

NO_TAIL_RESULT = (
    "No model family in this sweep measures the tail of a known truth, so the simulations do not speak to "
    "whether the synthetic share or the sampler's bias drives collapse."
)


def lab_answer(analysis: SimAnalysis | None) -> str:
    """The lab's one-sentence answer, computed by the lab from its numbers (quoted, never reworded)."""
    return analysis.result if analysis is not None else NO_TAIL_RESULT


def bias_label(control: str, value: float) -> str:
    """A sampler setting with its direction relative to the model: 'temperature 0.9 (sharpened)'."""
    name = control.replace("_", "-")
    unbiased = UNBIASED.get(control)
    if unbiased is None:
        return f"{name} {value:g}"
    if value == unbiased:
        return f"{name} {value:g} (unbiased)"
    diverse = value > unbiased if MORE_IS_DIVERSE.get(control, True) else value < unbiased
    return f"{name} {value:g} ({'flattened' if diverse else 'sharpened'})"


def size_label(boundary: Boundary) -> str:
    """What the boundary's size counts: the real samples held fixed, or the samples per generation."""
    return f"R = {boundary.size} real samples" if boundary.hold == "real" else f"M = {boundary.size} samples per generation"


def _digits(boundary: Boundary) -> int:
    """Two decimals, three where the band would otherwise print as one number."""
    lo, hi = boundary.band
    return 3 if lo is not None and hi is not None and f"{lo:.2f}" == f"{hi:.2f}" else 2


def share_text(boundary: Boundary) -> str:
    """The crossing share of a crossed boundary, as precise as its band needs."""
    return f"{boundary.ratio:.{_digits(boundary)}f}" if boundary.ratio is not None else "none"


def crossing_text(boundary: Boundary) -> str:
    if boundary.status == "crossed" and boundary.ratio is not None:
        return f"{share_text(boundary)} ({per_real(boundary.ratio)} synthetic per real)"
    if boundary.status == "below_grid":
        return f"below the lowest tested share ({boundary.tested[0]:g})"
    return f"not reached up to share {boundary.tested[1]:g}"


def band_text(boundary: Boundary) -> str:
    """The 95 % bootstrap band of the crossing share; an end beyond the tested shares said in words."""
    lo, hi = boundary.band
    lowest, highest = boundary.tested
    if lo is None and hi is None:
        if boundary.status == "not_reached":
            return f"not reached up to share {highest:g}"
        if boundary.status == "below_grid":
            return f"below the lowest tested share ({lowest:g})"
        return f"below {lowest:g} to beyond {highest:g} (not reached)"
    digits = _digits(boundary)
    low = f"{lo:.{digits}f}" if lo is not None else f"below the lowest tested share ({lowest:g})"
    high = f"{hi:.{digits}f}" if hi is not None else f"beyond {highest:g} (not reached)"
    return f"{low} to {high}"


def per_real(share: float) -> str:
    """S / R at a synthetic share rho = S / (R + S)."""
    if share >= 1:
        return "all"
    x = share / (1 - share)
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


def headline_boundaries(analysis: SimAnalysis) -> list[Boundary]:
    """The boundaries of the pre-registered headline slices (fixed real count), in the lab's order."""
    regimes = list(analysis.headline)
    rows = [b for b in analysis.boundaries if b.hold == "real" and b.regime in regimes]
    return sorted(rows, key=lambda b: (regimes.index(b.regime), bias_order(b.diversity_control, b.diversity), b.size))


def bias_order(control: str, value: float) -> tuple:
    """The unbiased sampler first, then sharpening settings from mild to strong, then flattening ones."""
    unbiased = UNBIASED.get(control)
    if unbiased is None:
        return (0, 0, value)
    diverse = value > unbiased if MORE_IS_DIVERSE.get(control, True) else value < unbiased
    return (value != unbiased, diverse, abs(value - unbiased))
