"""The audit as a LangGraph StateGraph: one node per stage, literature fanned out per claim.

    load_claims -> ground_citations -> retrieve_literature (x claims, Send) -> assess_stance
                -> run_simulations -> synthesize -> write_report
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from agent.nodes.claims import load_claims
from agent.nodes.grounding import ground_citations
from agent.nodes.literature import fan_out_literature, retrieve_literature
from agent.nodes.report import write_audit_report
from agent.nodes.simulate import run_simulations
from agent.nodes.stance import assess_stance
from agent.nodes.synthesize import synthesize
from agent.state import AuditState
from simulations.files import set_aside

# The pydantic models the state holds; the checkpointer restores exactly these and nothing else.
_STATE_MODELS = [
    ("agent.state", "RunConfig"), ("agent.state", "Candidate"),
    ("agent.models", "Inquiry"), ("agent.models", "Claim"), ("agent.models", "Anchor"), ("agent.models", "Task"),
    ("agent.models", "Evidence"), ("agent.models", "Verdict"), ("agent.models", "ClaimAudit"),
    ("agent.models", "AssertionAudit"), ("agent.models", "SimulationStance"), ("agent.assertions", "Assertion"),
    ("agent.models", "FollowUpQuestion"), ("agent.models", "TaskFinding"),
    ("tools.grounding", "CitationCheck"), ("tools.grounding", "PaperRef"), ("tools.papers", "Paper"),
]


def build_graph() -> StateGraph:
    builder = StateGraph(AuditState)
    builder.add_node("load_claims", load_claims)
    builder.add_node("ground_citations", ground_citations)
    builder.add_node("retrieve_literature", retrieve_literature)
    builder.add_node("assess_stance", assess_stance)
    builder.add_node("run_simulations", run_simulations)
    builder.add_node("synthesize", synthesize)
    builder.add_node("write_report", write_audit_report)
    builder.add_edge(START, "load_claims")
    builder.add_edge("load_claims", "ground_citations")
    builder.add_conditional_edges("ground_citations", fan_out_literature, ["retrieve_literature"])
    builder.add_edge("retrieve_literature", "assess_stance")
    builder.add_edge("assess_stance", "run_simulations")
    builder.add_edge("run_simulations", "synthesize")
    builder.add_edge("synthesize", "write_report")
    builder.add_edge("write_report", END)
    return builder


@contextmanager
def open_checkpointer(path: Path) -> Iterator[SqliteSaver]:
    """The run store's checkpoint database. One SQLite cannot read back (garbled bytes, a copy cut
    short, not a database) is moved aside as `<name>.corrupt-<timestamp>` (simulations.files.set_aside) and
    started afresh, never a traceback: a run it held then starts again from its first stage when
    resumed. `saver.set_aside_as` says where the old file went (None: it was sound)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn, set_aside_as = sqlite3.connect(path, check_same_thread=False), None
    if _garbled(conn):
        conn.close()
        set_aside_as = set_aside(path, companions=("-journal", "-wal", "-shm"))
        conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=_STATE_MODELS))
        saver.set_aside_as = set_aside_as
        yield saver
    finally:
        conn.close()


def _garbled(conn: sqlite3.Connection) -> bool:
    """Whether the database is damaged (every page looked at once); other faults (disk full, read-only)
    are not damage and surface when the checkpointer is used."""
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as error:
        return (getattr(error, "sqlite_errorname", "") or "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return verdict is None or verdict[0] != "ok"


# For `langgraph dev` / LangGraph Studio (langgraph.json); the platform supplies its own checkpointer.
graph = build_graph().compile()
