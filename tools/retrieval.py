"""Related-paper retrieval: lexical candidates (FTS5) plus embedding neighbours, re-ranked.

Re-ranking formula, for a candidate at 0-based position `rank` among the `n_lexical` lexical hits:

    score = SEMANTIC_WEIGHT * cosine(query, paper) + LEXICAL_WEIGHT * (1 - rank / n_lexical)

and candidates that came only from the embedding neighbours get no lexical part. The cosine is
taken between the query and the paper's title and summary; findings stay out of the embedded text
because they nearly double its length (and MiniLM's encoding time) while repeating the summary, and
the lexical part already searches them.

The embedding neighbours come from tools.dense at any size of the index (an HNSW graph over the
papers that are embedded; that module says which are, and when); the lexical hits are embedded
on demand here, for the re-ranking.
"""

from __future__ import annotations

from datetime import date

from tools.dense import dense_index, paper_text
from tools.embeddings import Embedder, cosine
from tools.papers import Paper
from tools.snapshot import Snapshot

SEMANTIC_WEIGHT = 0.75
LEXICAL_WEIGHT = 0.25
LEXICAL_CANDIDATES = 60  # at least this many FTS hits go to the re-ranker
DENSE_CANDIDATES = 30  # nearest papers by embedding that join them

__all__ = ["DENSE_CANDIDATES", "LEXICAL_CANDIDATES", "find_related", "paper_text", "rerank"]


def rerank(
    query: str, candidates: list[Paper], embedder: Embedder, limit: int, *, n_lexical: int | None = None
) -> list[tuple[Paper, float]]:
    """Order `candidates` (lexical hits first, best first) by the formula in the module docstring.

    `n_lexical` says how many leading candidates are lexical hits; default: all of them.
    """
    if not candidates or limit <= 0:
        return []
    n_lexical = len(candidates) if n_lexical is None else n_lexical
    similarity = cosine(embedder.encode([query]), embedder.encode([paper_text(p) for p in candidates]))[0]
    scored = []
    for rank, (paper, sim) in enumerate(zip(candidates, similarity, strict=True)):
        lexical = 1.0 - rank / n_lexical if rank < n_lexical else 0.0
        scored.append((paper, float(SEMANTIC_WEIGHT * sim + LEXICAL_WEIGHT * lexical)))
    scored.sort(key=lambda pair: pair[1], reverse=True)
    return scored[:limit]


def find_related(
    query: str, snapshot: Snapshot, embedder: Embedder, *, since: date | None, until: date | None, limit: int
) -> list[tuple[Paper, float]]:
    """Papers in [since, until] most related to `query`, best first, with their re-ranking score."""
    lexical = [p for p, _ in snapshot.search(query, since=since, until=until, limit=max(LEXICAL_CANDIDATES, 3 * limit))]
    seen = {p.id for p in lexical}
    dense = [p for p in _nearest(query, snapshot, embedder, since, until) if p.id not in seen]
    return rerank(query, lexical + dense, embedder, limit, n_lexical=len(lexical))


def _nearest(query: str, snapshot: Snapshot, embedder: Embedder, since: date | None, until: date | None) -> list[Paper]:
    vector = embedder.encode([query])[0]
    return [p for p, _ in dense_index(snapshot, embedder).nearest(vector, since=since, until=until, k=DENSE_CANDIDATES)]
