"""Stage 5: plan and run the recursive-training simulations that test the ratio hypothesis."""

from __future__ import annotations

from dataclasses import dataclass

from langgraph.config import get_stream_writer

from agent.services import services_for
from agent.state import AuditState
from simulations.plots import write_figures
from simulations.sweep import SweepConfig, run_sweep

# Claims carrying these tags are the ones a ratio-vs-diversity simulation can speak to.
SIMULATABLE_TAGS = {"ratio", "diversity", "tails"}


def run_simulations(state: AuditState) -> dict:
    run = state["run"]
    informs = [c.id for c in state["inquiry"].claims if SIMULATABLE_TAGS & set(c.tags)]
    config = SweepConfig.budget(run.sim_budget, seed=run.seed, device=run.device)
    writer = get_stream_writer()
    result = run_sweep(
        config,
        cache_dir=services_for(run).settings.sim_cache_dir,
        progress=lambda done, total: writer({"simulation": [done, total]}),
    )
    figures = write_figures(result, run.out_dir / "figures")
    return {
        "simulation": {
            "plan": {"budget": run.sim_budget, "informs_claims": informs},
            "result": result.model_dump(mode="json"),
            "figures": [str(p) for p in figures],
        }
    }


@dataclass(frozen=True)
class SimFacts:
    """The numbers from the simulation lab that claims, tasks, questions and the bottom line cite.

    Shares and the ratio effect come from the lab's primary block (the part of the grid where ratio
    and diversity both vary); collapse counts and thresholds come from every cell and group.
    """

    verdict: str
    regime: str  # the primary block's regime
    shares: dict[str, dict]  # factor -> {"share", "ci"}: share of variance in final tail loss
    ratio_effect: dict  # low_level, high_level, tail_loss_at_low, tail_loss_at_high
    tolerance: float
    diversity_control: str
    thresholds: list[dict]  # every group's rows, each with its "regime" and "data" (amount per generation) added
    final_loss: list[tuple[str, float, float]]  # (regime, ratio, mean final tail loss) per cell

    def share(self, factor: str) -> float:
        return self.shares.get(factor, {}).get("share", 0.0)

    def share_text(self, factor: str) -> str:
        if factor not in self.shares:
            return f"{factor.replace('_', ' ')} did not vary"
        lo, hi = self.shares[factor]["ci"]
        return f"{factor.replace('_', ' ')} {self.share(factor):.0%} (95% CI {lo:.0%}–{hi:.0%})"

    def collapsed(self, regimes: set[str] | None = None) -> tuple[int, int]:
        """(cells whose mean final tail loss exceeds the tolerance, cells) among `regimes` (all: None)."""
        cells = [loss for regime, _, loss in self.final_loss if regimes is None or regime in regimes]
        return sum(loss > self.tolerance for loss in cells), len(cells)


def sim_facts(analysis: dict, cells: list[dict]) -> SimFacts | None:
    """None when no block of the grid varies both ratio and diversity (nothing to separate)."""
    primary = analysis.get("primary")
    if primary is None:
        return None
    group = next(g for g in analysis["groups"] if all(g[k] == v for k, v in primary.items()))
    final_loss = []
    for cell in cells:
        kept = cell["metrics"]["tail_mass_kept"]
        if kept[1] is not None and kept[-1] is not None:  # entry 1: fit on real data only
            final_loss.append((cell["regime"], cell["ratio"], kept[1] - kept[-1]))
    return SimFacts(
        verdict=analysis["verdict"],
        regime=primary["regime"],
        shares=group["variance_shares"],
        ratio_effect=analysis["effect_of_ratio"],
        tolerance=analysis["thresholds"]["tolerance"],
        diversity_control=primary["diversity_control"],
        thresholds=[
            {**t, "regime": g["regime"], "data": _amount(t)} for g in analysis["groups"] for t in g.get("thresholds", [])
        ],
        final_loss=final_loss,
    )


def _amount(row: dict) -> str:
    """A threshold row holds either the real count (fixed-real blocks) or the training size (fixed-total)."""
    return f"{row['real_amount']} real samples" if "real_amount" in row else f"{row['samples']} samples in all"
