"""Stage 7: assemble the Report (the report.json contract) and render it to md / json / html.

The report folder is written as a whole (tools/files.py `staging_dir`/`replace_dir`): every file,
figures included, goes to a hidden folder beside it that is renamed into its place at the end. A
process killed while writing leaves no half report behind (resume rewrites it), and `--force`
leaves nothing of the report it replaces. The figures are drawn here, from the checkpointed sweep,
so a resumed run never depends on files an earlier attempt wrote.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from importlib.metadata import version

from agent.changes import since_baseline
from agent.models import Evidence, Report, SourceInfo
from agent.nodes.simulate import lab_answer, skipped_because, sweep_result
from agent.report.bibtex import bibtex
from agent.report.render import write_report
from agent.services import services_for
from agent.state import AuditState
from simulations.plots import write_figures
from simulations.sweep import SweepResult
from tools.files import replace_dir, staging_dir

_VERSIONS = ("collapse-audit", "langgraph", "torch", "arxiv", "openai", "httpx", "pydantic")


def write_audit_report(state: AuditState) -> dict:
    run, services = state["run"], services_for(state["run"])
    audits = state["audits"]
    anchors = state["citations"].get("anchors", [])
    citations = [c for a in audits for c in a.citations] + anchors
    with_id = [a for a in audits if any(c.arxiv_id for c in a.citations)]
    # Every stance judgement in the report: each assertion's retrieved papers and the claim's cited ones.
    # (Verdicts are not judgements: agent/verdicts.py derives them from these.)
    judgements = [e for a in audits for assertion in a.assertions for e in [*assertion.evidence, *assertion.cited]]
    judged = [e.judged_by for e in judgements]
    sim = state["simulation"]
    sweep = sweep_result(state)
    staging = staging_dir(run.out_dir, run.run_id)
    drawn = write_figures(sweep, staging / "figures") if sweep is not None else []
    figures = [str(run.out_dir / "figures" / p.name) for p in drawn]  # where they are once published
    report = Report(
        run_id=run.run_id,
        created_at=datetime.now(timezone.utc),
        config=run.model_dump(mode="json"),
        title=state["inquiry"].title,
        question=state["inquiry"].question,
        bottom_line=state["bottom_line"],
        claims=audits,
        citations=citations,
        anchor_citations=anchors,
        simulations=(simulations_section(sweep, sim["plan"], figures) if sweep is not None
                     else {"skipped": skipped_because(state), "plan": sim["plan"]}),
        follow_up_questions=state["follow_ups"],
        tasks=state["tasks"],
        sources=[SourceInfo(name=n, detail=d) for n, d in services.source.describe()],
        method={
            "versions": {"python": platform.python_version(), **{p: version(p) for p in _VERSIONS}},
            "seed": run.seed,
            "simulation_config": sweep.config.model_dump(mode="json") if sweep is not None else None,
            "snapshot_date": services.snapshot.snapshot_date.isoformat(),
            "embeddings": services.embedder.name,
            "judgements": {**{kind: judged.count(kind) for kind in ("heuristic", "model")},
                           "undetermined": sum(e.stance is None for e in judgements),
                           # judged by the heuristic because the model failed on them (counted in "heuristic")
                           "fallback": sum(e.fallback for e in judgements)},
            # quotes, quoted passages and arXiv IDs the model wrote that the judged paper does not bear out
            "removed_from_model_text": sum(e.removed for e in judgements),
            "claim_coverage": {
                "claims": len(audits),
                "with_checkable_id": len(with_id),
                "share": round(len(with_id) / len(audits), 3) if audits else 0.0,
            },
            "quotes": _quote_note([e for e in judgements if e.quote]),
            "llm": llm_method(run, services),
            # the prompt files the analyst sent (prompts/*.md.j2), by name, with their sha256
            "prompts": dict(sorted(services.analyst.prompts.items())),
        },
    )
    if state.get("baseline"):  # a re-check: what changed since the run it re-checks, from both runs' records
        report.what_changed = since_baseline(state["baseline"], report, since=run.since)
    files = write_report(report, staging, figures=[str(p) for p in drawn], sweep=sweep)
    files.append(_write_bib(state, citations, judgements, staging))
    replace_dir(staging, run.out_dir)
    return {"report_files": [str(run.out_dir / f.relative_to(staging)) for f in files]}


def _write_bib(state: AuditState, citations: list, judgements: list[Evidence], out_dir) -> Path:
    """report.bib: the grounded citations, then every retrieved paper the report lists."""
    shown = {e.arxiv_id for e in judgements}
    retrieved = {c.paper.id: c.paper for found in state.get("candidates", {}).values() for c in found
                 if c.paper.id in shown}
    cited = [c.paper for c in citations if c.status == "grounded" and c.paper is not None]
    path = out_dir / "report.bib"
    path.write_text(bibtex([*cited, *retrieved.values()],
                           {i: p.primary_category for i, p in retrieved.items() if p.primary_category}),
                    encoding="utf-8")
    return path


def simulations_section(sweep: SweepResult, plan: dict, figures: list[str]) -> dict:
    """report.json's `simulations`: the lab's typed results dumped to JSON, under stable keys.

    result       the lab's answer in one sentence (computed by the lab from the numbers below)
    design       the sweep's config, what each headline regime holds fixed, the response and its window
    effects      per cell: relative tail mass and the paired differences vs its real-only counterfactuals
    boundaries   per slice: the synthetic share where the tail mass crosses 1 - tolerance, with its band
    scale        the scale-invariance tests f(cR, cS) = f(R, S)
    stationarity per regime: how many cells were flat over the averaging window
    cells        every cell's per-generation metrics and its counterfactual differences
    """
    analysis = sweep.analysis
    dump = lambda models: [m.model_dump(mode="json") for m in models]  # noqa: E731
    return {
        "result": lab_answer(analysis),
        "design": {
            "config": sweep.config.model_dump(mode="json"),
            "held_fixed": analysis.headline if analysis else {},
            "response": analysis.response if analysis else None,
            "tolerance": analysis.tolerance if analysis else sweep.config.tolerance,
            "window": list(analysis.window) if analysis else None,
        },
        "effects": dump(analysis.effects) if analysis else [],
        "boundaries": dump(analysis.boundaries) if analysis else [],
        "scale": dump(analysis.scale) if analysis else [],
        "stationarity": dump(analysis.stationarity) if analysis else [],
        "notes": analysis.notes if analysis else [],
        "cells": dump(sweep.cells),
        "plan": plan,
        "figures": figures,
    }


def llm_method(run, services) -> dict:
    """report.json's `method.llm`: which analyst judged and why; with a model, its endpoint, the tokens
    it was sent and returned per stage and model (from the API's `usage`), the answers the response
    cache gave (no request, no tokens), and their cost from the price table (None: not computed).

    The counts are this process's: a resumed run counts the attempt that finished it, whose answers
    to questions an earlier attempt had asked come from the cache."""
    chosen = run.llm_choice or f"--llm {run.llm}"
    client = services.llm
    if client is None:
        return {"analyst": "offline", "chosen": chosen,
                "summary": f"Analyst: the offline heuristic judge ({chosen}); no LLM was asked."}
    from tools.llm_costs import PriceTable, PriceTableError, load_prices, usage_summary

    try:
        prices, price_problem = load_prices(services.settings.llm_prices_path), None
    except PriceTableError as error:
        prices, price_problem = PriceTable(source="none"), str(error)
    figures = usage_summary(client.usage, prices)
    method = {"analyst": "openai", "chosen": chosen, "endpoint": client.endpoint, "model": client.model,
              "structured_output": client.mode, "concurrency": client.concurrency, **figures,
              "cache": client.cache.describe() if client.cache is not None else "no response cache"}
    if price_problem:
        method["prices"]["problem"] = price_problem
    method["summary"] = _llm_line(method, run.llm_choice)
    return method


def _llm_line(method: dict, auto: str | None) -> str:
    """The report's one line on the model: who, why, tokens per stage, cache hits, cost."""
    who = f"the model {method['model']!r} at {method['endpoint']}"
    line = f"Analyst: {who} ({auto or '--llm openai'})."
    stages: dict[str, dict] = {}
    for row in method["stages"]:
        tally = stages.setdefault(row["stage"], {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
        for key in tally:
            tally[key] += row[key]
    asked = [f"{stage} {t['requests']} request{'s' if t['requests'] != 1 else ''} "
             f"({t['prompt_tokens']:,} prompt + {t['completion_tokens']:,} completion tokens)"
             for stage, t in stages.items() if t["requests"]]
    total = method["total"]
    line += f" Tokens: {'; '.join(asked)}." if asked else " No request was sent."
    if total["unreported"]:
        line += f" {total['unreported']} replies carried no token counts."
    line += (f" {total['cache_hits']} answer{'s' if total['cache_hits'] != 1 else ''} from the response cache "
             "(no request, no tokens).")
    prices = method["prices"]
    if not total["requests"]:
        line += " Nothing was spent."
    elif total["cost_usd"] is not None:
        rates = "; ".join(f"{m} ${p['input']:g} / ${p['output']:g}" for m, p in prices["used"].items())
        line += f" Cost ${total['cost_usd']:.4f} at {prices['source']}" + (
            f" ({rates} per million prompt / completion tokens)." if rates else ".")
    elif prices.get("problem"):
        line += f" Cost not computed: {prices['problem']}."
    else:
        unpriced = ", ".join(repr(m) for m in prices["unpriced_models"]) or "some replies"
        line += (f" Cost not computed: no price for {unpriced} in {prices['source']} (tokens are counted; "
                 "add the model to a price table named by COLLAPSE_AUDIT_LLM_PRICES).")
    return line


def _quote_note(quoted: list[Evidence]) -> str:
    """Where the report's quotes come from; a quote of a paper's title is counted as such, not as its text."""
    if not quoted:
        return "No quotes: no judged paper's text was quoted."
    titles = sum(e.quote.strip() == e.title.strip() for e in quoted)
    body = [e for e in quoted if e.quote.strip() != e.title.strip()]
    paraphrased = sum(e.quote_source == "paraphrase" for e in body)
    abstracts = sum(e.quote_source == "abstract" for e in body)
    return (
        f"Quotes: {paraphrased} from the offline snapshot's own-words paraphrases (not the papers' abstracts), "
        f"{abstracts} from arXiv abstracts (the live API, or the index after `snapshot update`), and {titles} that are only the paper's title; each was "
        "checked to occur in that text."
    )
