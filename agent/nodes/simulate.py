"""Stage 5: plan and run the recursive-training simulations that test the ratio hypothesis."""

from __future__ import annotations

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
