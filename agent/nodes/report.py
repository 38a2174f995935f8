"""Stage 7: assemble the Report (the report.json contract) and render it to md / json / html."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib.metadata import version

from agent.models import Report, SourceInfo
from agent.report.render import write_report
from agent.services import services_for
from agent.state import AuditState

_VERSIONS = ("collapse-audit", "langgraph", "torch", "arxiv", "openai", "httpx", "pydantic")


def write_audit_report(state: AuditState) -> dict:
    run, services = state["run"], services_for(state["run"])
    audits = state["audits"]
    anchors = state["citations"].get("anchors", [])
    citations = [c for a in audits for c in a.citations] + anchors
    with_id = [a for a in audits if any(c.arxiv_id for c in a.citations)]
    judged = [e.judged_by for a in audits for e in a.evidence] + [a.verdict.judged_by for a in audits]
    sim = state["simulation"]
    analysis = sim["result"]["analysis"]
    report = Report(
        run_id=run.run_id,
        created_at=datetime.now(timezone.utc),
        config=run.model_dump(mode="json"),
        question=state["inquiry"].question,
        bottom_line=state["bottom_line"],
        claims=audits,
        citations=citations,
        anchor_citations=anchors,
        simulations={
            "verdict": analysis["verdict"],
            "effect_of_ratio": analysis.get("effect_of_ratio"),
            "effect_of_diversity": analysis.get("effect_of_diversity"),
            "experiments": sim["result"]["cells"],
            "analysis": analysis,
            "config": sim["result"]["config"],
            "plan": sim["plan"],
            "figures": sim["figures"],
        },
        follow_up_questions=state["follow_ups"],
        tasks=state["tasks"],
        sources=[SourceInfo(name=n, detail=d) for n, d in services.source.describe()],
        method={
            "versions": {"python": platform.python_version(), **{p: version(p) for p in _VERSIONS}},
            "seed": run.seed,
            "simulation_config": sim["result"]["config"],
            "snapshot_date": services.snapshot.snapshot_date.isoformat(),
            "embeddings": services.embedder.name,
            "judgements": {kind: judged.count(kind) for kind in ("heuristic", "model")},
            "claim_coverage": {
                "claims": len(audits),
                "with_checkable_id": len(with_id),
                "share": round(len(with_id) / len(audits), 3) if audits else 0.0,
            },
            "quotes": _quote_note([e.quote_source for a in audits for e in a.evidence if e.quote]),
        },
    )
    files = write_report(report, run.out_dir, figures=sim["figures"])
    return {"report_files": [str(f) for f in files]}


def _quote_note(sources: list[str]) -> str:
    paraphrased, abstracts = sources.count("paraphrase"), sources.count("abstract")
    if not sources:
        return "No quotes: no graded paper's text was quoted."
    return (
        f"Quotes: {paraphrased} from the offline snapshot's own-words paraphrases (not the papers' abstracts), "
        f"{abstracts} from abstracts returned by the live arXiv API; each was checked to occur in that text."
    )
