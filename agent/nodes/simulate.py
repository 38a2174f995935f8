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
    """The numbers from the simulation lab's analysis that claims, tasks and questions cite:
    read from its primary block, the part of the grid where ratio and diversity both vary."""

    verdict: str
    shares: dict[str, dict]  # factor -> {"share", "ci"}: share of variance in final tail loss
    thresholds: list[dict]  # {"ratio", "real_amount", "min_diversity"}: least diversity within tolerance
    tolerance: float
    diversity_control: str

    def share(self, factor: str) -> float:
        return self.shares.get(factor, {}).get("share", 0.0)

    def share_text(self, factor: str) -> str:
        if factor not in self.shares:
            return f"{factor.replace('_', ' ')} did not vary"
        lo, hi = self.shares[factor]["ci"]
        return f"{factor.replace('_', ' ')} {self.share(factor):.0%} (95% CI {lo:.0%}–{hi:.0%})"


def sim_facts(simulation: dict) -> SimFacts | None:
    """None when no block of the grid varies both ratio and diversity (nothing to separate)."""
    analysis = simulation["result"]["analysis"]
    primary = analysis.get("primary")
    if primary is None:
        return None
    group = next(g for g in analysis["groups"] if all(g[k] == v for k, v in primary.items()))
    return SimFacts(
        verdict=analysis["verdict"],
        shares=group["variance_shares"],
        thresholds=analysis["thresholds"]["per_ratio"],
        tolerance=analysis["thresholds"]["tolerance"],
        diversity_control=primary["diversity_control"],
    )
