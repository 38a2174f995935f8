"""Dense (embedding) retrieval over the offline index, at any size of it.

What is embedded, and when:
- every paper of an index that holds at most EMBED_ALL_LIMIT papers (the packaged snapshot plus a
  few `snapshot update` topics), on the first dense search with an embedder: seconds of work;
- in a larger index (a Kaggle ingest), our curated papers (the packaged snapshot's, kept when a
  Kaggle or arXiv row replaced them), on that first search, and the papers that
  `collapse-audit snapshot embed` selects (newest first; `--category`, `--since`, `--max`). MiniLM
  embedded about 17 papers a second (title + abstract, up to its 256 tokens) on this project's 2
  shared CPU cores (that command prints the rate it gets), so 100 k papers take about 1.6 hours
  there and all 2.7 M Kaggle papers about two days: embed the part of arXiv that matters, or run
  it where there is a GPU.

Lexical (FTS) candidates without a vector are embedded on demand for re-ranking only
(tools.retrieval; the embedder caches them per process); they do not join the dense set. So what
dense search can return depends on the index's content and on explicit `snapshot embed` runs, never
on which queries ran before: a run and its replay, or two threads of one run, see the same neighbours.

Storage and search: vectors live in the index's `vectors` table (float32, exact; in memory when the
index is read-only, as a recorded run's copy is). Neighbours are found by an HNSW graph (usearch,
cosine, int8) over those vectors, saved beside the index as `<index>.<embedder>-<dim>.usearch` and
rebuilt or caught up from the table when it is missing or behind; the graph's candidates are then
re-scored with the exact vectors and cut to the date window (fetching more while too few fall in it,
and scanning the window's vectors exactly when even that finds too few). When usearch cannot load,
every search scans the stored vectors exactly (slower) and `describe()` says so: the dense half is
never switched off without a word.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.papers import Paper

if TYPE_CHECKING:
    from tools.embeddings import Embedder
    from tools.snapshot import Snapshot

log = logging.getLogger(__name__)

EMBED_ALL_LIMIT = 5_000  # papers: an index this small is embedded whole on first use
EMBED_BATCH = 256  # papers encoded and stored per step
GRAPH_FETCH_MIN = 128  # neighbours asked of the graph at least, then re-scored exactly
EXACT_GRAPH_LIMIT = 50_000  # vectors; up to this many the graph is searched exhaustively (a few ms)
GRAPH_EXPANSION = 256  # HNSW's search breadth (usearch's default is 64): recall over speed
GRAPH_FETCH_MAX = 8_192  # beyond this, a narrow window is scanned exactly instead
SAVE_EVERY = 20_000  # vectors added to the graph since its last save that trigger a save
_LOCK = threading.Lock()


def paper_text(paper: Paper) -> str:
    """What a paper's embedding is computed from: title and summary. Findings stay out because they
    nearly double the text (and MiniLM's time) while repeating the summary; FTS searches them."""
    return f"{paper.title}. {paper.summary}"


def dense_index(snapshot: Snapshot, embedder: Embedder) -> DenseIndex:
    """The snapshot's dense index for this embedder: one per snapshot object and embedder."""
    key = embedder_key(embedder)
    with _LOCK:
        index = snapshot.dense_indexes.get(key)
        if index is None:
            index = snapshot.dense_indexes[key] = DenseIndex(snapshot, embedder)
        return index


def embedder_key(embedder: Embedder) -> str:
    """The name vectors are stored under: the embedder and its dimension ("minilm-384")."""
    dim = getattr(embedder, "dim", None) or int(embedder.encode(["dimension probe"]).shape[1])
    return f"{embedder.name}-{dim}"


class DenseIndex:
    """Embeddings of one embedder over one snapshot: storage, the ANN graph, nearest neighbours."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.key = embedder_key(embedder)
        self.dim = int(self.key.rsplit("-", 1)[1])
        self._lock = threading.RLock()
        self._prepared = False
        self._graph: Any = None  # usearch.index.Index, keys = papers.rowid
        self.graph_problem: str | None = None  # why there is no graph (searches scan exactly)
        self._seq = 0  # the highest `vectors.seq` the graph holds
        self._unsaved = 0
        self._memory: dict[int, np.ndarray] = {}  # vectors the index could not store (read-only)
        self.store_problem: str | None = None

    # --- what is embedded ------------------------------------------------------------------------

    def prepare(self) -> int:
        """On first use: embed what is always embedded (module docstring) and load the graph.
        Returns how many papers it embedded."""
        with self._lock:
            if self._prepared:
                return 0
            done = self.embed() if len(self.snapshot) <= EMBED_ALL_LIMIT else self.embed(curated=True)
            self._prepared = True
            self._sync_graph()
            return done

    def embed(
        self, *, curated: bool = False, since: date | None = None, until: date | None = None,
        category: str | None = None, limit: int | None = None, on_batch: Any = None,
    ) -> int:
        """Embed and store papers that have no vector yet, newest first: all of them, or our curated
        ones, or those in [since, until] / in `category`; at most `limit`. Returns how many.
        `on_batch(done)` is called after each stored batch."""
        done = 0
        after: tuple[str, int] | None = None
        with self._lock:
            while limit is None or done < limit:
                want = EMBED_BATCH if limit is None else min(EMBED_BATCH, limit - done)
                rows, after = self._unembedded(curated, since, until, category, want, after)
                if not rows:
                    break
                papers = [Paper.model_validate_json(record) for _, record in rows]
                vectors = np.asarray(self.embedder.encode([paper_text(p) for p in papers]), dtype=np.float32)
                self._store([rowid for rowid, _ in rows], vectors)
                done += len(rows)
                if on_batch is not None:
                    on_batch(done)
            if done and self._prepared:
                self._sync_graph()
                self.save()
        return done

    def _unembedded(
        self, curated: bool, since: date | None, until: date | None, category: str | None, n: int,
        after: tuple[str, int] | None,
    ) -> tuple[list[tuple[int, str]], tuple[str, int] | None]:
        """Up to `n` (rowid, record) without a vector, after the cursor `after`: newest first, or,
        for the curated papers, in rowid order through the `origin` and `topics` indexes."""
        where = ["NOT EXISTS (SELECT 1 FROM vectors v WHERE v.embedder = ? AND v.paper = p.rowid)"]
        params: list[Any] = [self.key]
        if curated:
            where.append("p.rowid IN (SELECT rowid FROM papers WHERE origin = 'packaged' "
                         "UNION SELECT rowid FROM papers WHERE topics IS NOT NULL)")
        if since is not None:
            where.append("p.published >= ?")
            params.append(since.isoformat())
        if until is not None:
            where.append("p.published <= ?")
            params.append(until.isoformat())
        if category is not None:
            where.append("p.category = ?")
            params.append(category)
        order, cursor = ("p.rowid", "p.rowid > ?") if curated else ("p.published DESC, p.rowid DESC", "(p.published, p.rowid) < (?, ?)")
        rows: list[tuple[int, str]] = []
        while len(rows) < n:
            clauses, args = list(where), list(params)
            if after is not None:
                clauses.append(cursor)
                args += [after[1]] if curated else list(after)
            want = n - len(rows)
            found = self.snapshot.read(
                f"SELECT p.rowid, p.published, p.record FROM papers p WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT ?",
                [*args, want],
            )
            if not found:
                break
            after = (found[-1][1], found[-1][0])
            rows += [(rowid, record) for rowid, _, record in found if rowid not in self._memory]
            if len(found) < want:
                break
        return rows, after

    def _store(self, rowids: list[int], vectors: np.ndarray) -> None:
        """Into the `vectors` table, or into memory when the index is read-only (or locked)."""
        if self.snapshot.writable and self.store_problem is None:
            try:
                self.snapshot.write(
                    "INSERT OR REPLACE INTO vectors (embedder, paper, vector) VALUES (?, ?, ?)",
                    [(self.key, rowid, vector.tobytes()) for rowid, vector in zip(rowids, vectors, strict=True)],
                )
                return
            except sqlite3.OperationalError as error:  # locked by another writer, disk full
                self.store_problem = str(error)
                log.warning("dense index: cannot store embeddings in %s (%s); keeping them in memory",
                            self.snapshot.index_path, error)
        for rowid, vector in zip(rowids, vectors, strict=True):
            self._memory[rowid] = vector
        if self._graph is not None:
            self._graph_add(np.asarray(rowids, dtype=np.uint64), vectors)

    def count(self) -> int:
        """Papers with a vector for this embedder."""
        stored = self.snapshot.read("SELECT count(*) FROM vectors WHERE embedder = ?", [self.key])[0][0]
        return stored + len(self._memory)

    # --- the graph -------------------------------------------------------------------------------

    def _graph_path(self) -> Path | None:
        path = self.snapshot.index_path
        return None if path is None else path.with_name(f"{path.name}.{self.key}.usearch")

    def _sync_graph(self) -> None:
        """Load the saved graph (or start one), then add the vectors stored since it was saved."""
        if self._graph is None and self.graph_problem is None:
            try:
                from usearch.index import Index
            except Exception as error:  # not installed, or its binary does not load here
                self.graph_problem = f"usearch unavailable ({error})"
                log.warning("dense index: %s; nearest neighbours by exact scan", self.graph_problem)
                return
            path, saved = self._graph_path(), self._saved_state()
            if path is not None and saved is not None and path.is_file():
                try:
                    graph = Index.restore(str(path))
                    # a graph holding many papers whose vector went (their text changed) is rebuilt
                    stale = graph is not None and len(graph) > 1.2 * self.count() + 1_000
                    if graph is not None and graph.ndim == self.dim and len(graph) == saved["count"] and not stale:
                        graph.expansion_search = GRAPH_EXPANSION
                        self._graph, self._seq = graph, saved["seq"]
                except Exception as error:  # a damaged file: rebuilt from the table below
                    log.warning("dense index: cannot load %s (%s); rebuilding it", path, error)
            if self._graph is None:
                self._graph, self._seq = Index(ndim=self.dim, metric="cos", dtype="i8", expansion_search=GRAPH_EXPANSION), 0
                if self._memory:
                    self._graph_add(np.fromiter(self._memory, dtype=np.uint64), np.stack(list(self._memory.values())))
        if self._graph is None:
            return
        while rows := self.snapshot.read(
            "SELECT seq, paper, vector FROM vectors WHERE embedder = ? AND seq > ? ORDER BY seq LIMIT 20000",
            [self.key, self._seq],
        ):
            keys = np.array([paper for _, paper, _ in rows], dtype=np.uint64)
            self._graph_add(keys, np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows]))
            self._seq = rows[-1][0]

    def _graph_add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        held = np.asarray(self._graph.contains(keys), dtype=bool).reshape(-1)
        if held.any():
            self._graph.remove(keys[held])  # a paper re-embedded: its old vector goes
        self._graph.add(keys, vectors)
        self._unsaved += len(keys)
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def _saved_state(self) -> dict | None:
        row = self.snapshot.read("SELECT value FROM meta WHERE key = ?", [f"ann:{self.key}"])
        return json.loads(row[0][0]) if row else None

    def save(self) -> None:
        """Write the graph beside the index (atomically), with what it holds recorded in the index."""
        with self._lock:
            path = self._graph_path()
            if self._graph is None or path is None or not self._unsaved or not self.snapshot.writable or self._memory:
                return
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                self._graph.save(str(temporary))
                os.replace(temporary, path)
                self.snapshot.write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                    [(f"ann:{self.key}", json.dumps({"seq": self._seq, "count": len(self._graph)}))])
                self._unsaved = 0
            except (OSError, sqlite3.Error, RuntimeError) as error:  # the graph is rebuilt next time
                temporary.unlink(missing_ok=True)
                log.warning("dense index: cannot save %s (%s)", path, error)

    # --- search ----------------------------------------------------------------------------------

    def nearest(self, query: np.ndarray, *, since: date | None, until: date | None, k: int) -> list[tuple[Paper, float]]:
        """The `k` embedded papers in [since, until] most similar (cosine) to the vector `query`,
        best first, with that similarity."""
        self.prepare()
        if k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / (np.linalg.norm(q) or 1.0)
        bounds = ((since or date.min).isoformat(), (until or date.max).isoformat())
        with self._lock:
            graph = self._graph
            size = 0 if graph is None else len(graph)
            if graph is None:
                scored = self._scan(q, bounds, k)
            else:
                fetch = min(size, max(4 * k, GRAPH_FETCH_MIN))
                while True:
                    # small graphs exhaustively: exact, and the same answer however the graph was built
                    found = graph.search(q, fetch, exact=size <= EXACT_GRAPH_LIMIT) if size else None
                    keys = np.asarray(found.keys, dtype=np.int64).tolist() if found is not None else []
                    scored = self._rescore(keys, q, bounds)
                    if len(scored) >= k or fetch >= size:
                        break
                    if fetch >= GRAPH_FETCH_MAX:  # the window holds few embedded papers: look at them all
                        scored = self._scan(q, bounds, k)
                        break
                    fetch = min(size, fetch * 8)
        scored.sort(key=lambda hit: (-hit[0], hit[1]))
        top = scored[:k]
        records = self._records([rowid for _, rowid in top])
        return [(Paper.model_validate_json(records[rowid]), score) for score, rowid in top if rowid in records]

    def _rescore(self, keys: list[int], q: np.ndarray, bounds: tuple[str, str]) -> list[tuple[float, int]]:
        """(exact cosine, rowid) of the graph's candidates that still have this vector and fall in the window."""
        scored: list[tuple[float, int]] = []
        stored = [key for key in keys if key not in self._memory]
        for start in range(0, len(stored), 500):
            chunk = stored[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.snapshot.read(
                f"SELECT v.paper, v.vector FROM vectors v JOIN papers p ON p.rowid = v.paper WHERE v.embedder = ? "
                f"AND v.paper IN ({marks}) AND p.published >= ? AND p.published <= ?", [self.key, *chunk, *bounds],
            )
            scored += [(float(np.frombuffer(blob, dtype=np.float32) @ q), paper) for paper, blob in rows]
        scored += self._memory_scores([key for key in keys if key in self._memory], q, bounds)
        return scored

    def _scan(self, q: np.ndarray, bounds: tuple[str, str], k: int) -> list[tuple[float, int]]:
        """Every stored vector in the window, exactly, keeping the best `k` (papers' dates first
        when the window is the narrower side)."""
        best: list[tuple[float, int]] = []
        last = -1
        while rows := self.snapshot.read(
            "SELECT v.paper, v.vector FROM vectors v JOIN papers p ON p.rowid = v.paper WHERE v.embedder = ? "
            "AND v.paper > ? AND p.published >= ? AND p.published <= ? ORDER BY v.paper LIMIT 20000",
            [self.key, last, *bounds],
        ):
            matrix = np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])
            scores = matrix @ q
            keep = np.argsort(-scores, kind="stable")[:k]
            best = sorted(best + [(float(scores[i]), rows[i][0]) for i in keep], key=lambda h: (-h[0], h[1]))[:k]
            last = rows[-1][0]
        return best + self._memory_scores(list(self._memory), q, bounds)

    def _memory_scores(self, keys: list[int], q: np.ndarray, bounds: tuple[str, str]) -> list[tuple[float, int]]:
        if not keys:
            return []
        inside: set[int] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            inside |= {r for (r,) in self.snapshot.read(
                f"SELECT rowid FROM papers WHERE rowid IN ({marks}) AND published >= ? AND published <= ?", [*chunk, *bounds])}
        return [(float(self._memory[key] @ q), key) for key in keys if key in inside]

    def _records(self, rowids: list[int]) -> dict[int, str]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        return dict(self.snapshot.read(f"SELECT rowid, record FROM papers WHERE rowid IN ({marks})", rowids))

    def describe(self) -> str:
        """One line for a report's sources: what dense search covers, and how it searches."""
        self.prepare()
        how = ("nearest neighbours by an HNSW graph (usearch), re-scored exactly" if self._graph is not None
               else f"nearest neighbours by exact scan ({self.graph_problem})")
        where = "" if self.store_problem is None and self.snapshot.writable else "; vectors kept in memory (read-only index)"
        return (f"{self.count()} papers embedded ({self.key}): the whole index up to {EMBED_ALL_LIMIT} papers, else our "
                f"curated papers and those `snapshot embed` added; {how}{where}. Search hits without a vector "
                "are embedded for re-ranking only")
