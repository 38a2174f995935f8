"""Render a Report to report.md, report.json and a self-contained report.html."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from agent.models import Report
from agent.nodes.simulate import sim_facts

FLAGGED = {"wrong_paper", "year_mismatch", "nonexistent", "malformed", "not_found", "unverifiable", "no_id"}


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
    return env


def write_report(report: Report, out_dir: Path, figures: list[str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    context = {
        "r": report,
        "flagged": [
            (where, c)
            for where, checks in [*((a.id, a.citations) for a in report.claims), ("anchor list", report.anchor_citations)]
            for c in checks
            if c.status in FLAGGED
        ],
        "analysis": report.simulations["analysis"],
        "facts": sim_facts(report.simulations["analysis"], report.simulations["experiments"]),
        "figures": [Path(f) for f in figures],
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
