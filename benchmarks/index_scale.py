"""The offline index at the size of all of arXiv: ingest, lookup, search, dense search, grounding.

    python benchmarks/index_scale.py --records N [--seed S] [--embed M] [--embedder hashed|minilm]
                                     [--queries Q] [--citations C] [--keep DIR [--reuse]]

Generates a synthetic file in the shape of the Kaggle "arXiv metadata OAI snapshot" (one JSON object
per line with id, submitter, authors, title, comments, journal-ref, doi, report-no, categories,
license, abstract, versions[{version, created}], update_date, authors_parsed; titles and abstracts of
arXiv's lengths, with Kaggle's line breaks and indents, drawn from a Zipf vocabulary whose head is
the words of our packaged snapshot and whose tail is 200k made-up technical words; unique IDs in
the old `archive/YYMMNNN`, 4-digit `YYMM.NNNN` and 5-digit `YYMM.NNNNN` forms, in arXiv's
proportions; a few bad lines), ingests it into an index in a temporary data dir, and prints:

- ingest: records/s and lines/s, index size on disk, peak RSS of the process; beside it the
  full-text floor: the rate at which FTS5 alone, in C on one core, indexes 50,000 of the same
  records (what the ingest's text index costs however the rest is done);
- lookup p50/p99 (`Snapshot.get`, 90 % held IDs, 10 % absent);
- search p50/p99 (`Snapshot.search`, limit 60 as retrieval asks, without and with a 6-month window);
  above 50,000 papers, `--exact` of the queries also scored over every match, to show what the
  selective search gives up (top-10 overlap, the query's source paper found);
- author lookup p50/p99 (`Snapshot.by_authors`, as grounding's candidates use it);
- dense: `--embed M` newest papers embedded (rate), nearest-neighbour p50/p99 over them
  (tools.dense), and `find_related` (FTS + dense + re-rank) p50/p99;
- grounding: seconds per citation (`verify_text`, offline), after the judge's one-time warm-up.

`--embedder hashed` (default) is the lexical embedder at 384 dimensions, MiniLM's width, so the
vector index does the same work as with MiniLM at a fraction of the encoding time; `minilm` uses the
real model (its encoding rate is then the ingest-to-dense bottleneck, and is printed).
Targets (issue 13 item 6), on 2 cores at 2.7 M records: ingest >= 20k records/s, lookup p99 < 5 ms,
search p99 < 200 ms.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.arxiv_id import OLD_ARCHIVES  # noqa: E402
from tools.snapshot import Snapshot  # noqa: E402

CATEGORIES = (
    "cs.LG cs.CV cs.CL cs.AI stat.ML cs.RO cs.CR cs.IT math.IT cs.DS cs.NE cs.IR cs.SE cs.DC cs.HC cs.SI "
    "math.OC math.PR math.ST stat.TH stat.ME math.NA math.AP math.CO math.AG math.NT math.DG math.GT "
    "math.FA math.DS math.RT math.QA math-ph math.MP quant-ph hep-th hep-ph hep-ex hep-lat gr-qc "
    "astro-ph.GA astro-ph.CO astro-ph.SR astro-ph.HE astro-ph.EP astro-ph.IM cond-mat.mes-hall "
    "cond-mat.str-el cond-mat.stat-mech cond-mat.mtrl-sci cond-mat.soft cond-mat.supr-con "
    "cond-mat.quant-gas cond-mat.dis-nn physics.optics physics.flu-dyn physics.comp-ph physics.atom-ph "
    "physics.bio-ph physics.soc-ph physics.ins-det nucl-th nucl-ex nlin.CD nlin.SI q-bio.NC q-bio.PE "
    "q-bio.QM q-fin.ST q-fin.MF econ.EM eess.SP eess.IV eess.AS eess.SY cs.SY cs.GT cs.LO cs.PL cs.CY"
).split()
COMMON_SURNAMES = ("Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Kim Lee Park "
                   "Smith Johnson Brown Jones Garcia Miller Davis Martin Müller Schmidt Schneider Fischer "
                   "Rossi Russo Ferrari Dubois Durand Moreau Suzuki Tanaka Watanabe Ito Yamamoto Singh Kumar "
                   "Sharma Gupta Patel Cohen Levy Novak Kowalski Ivanov Petrov Smirnov Popov").split()
# arXiv's most frequent abstract words, roughly in order (stop words included: the index holds them)
COMMON_WORDS = (
    "the of and a in to we is for that with on this are by as an be which from model results show at "
    "can it our these data method two also has using study based paper between new such have their time "
    "its both one different system order used high field energy large state function present approach "
    "problem first power number structure non effect theory performance analysis well network learning "
    "than into properties over not find obtained three systems methods proposed magnetic case quantum "
    "phase models which dynamics space low all work algorithm general may information terms linear "
    "non-linear find given simple where results process mass potential small provide each experimental "
    "other single surface under paper scale show temperature distribution spin set point recent here "
    "demonstrate significant however graph local parameters shown optimal class physical approach solution "
    "important related evidence dimensional several framework transition neural observed measurements "
    "random range density current finite equation equations matrix develop frequency higher effects "
    "estimate known limit strong similar due stars galaxies galaxy star observations emission sample "
    "training deep task tasks images image networks dataset datasets language accuracy"
).split()
SYLLABLES = ("ka ro mi te lu san dor vek bri tal nos quin zer fal gor lim pra sto chu ven dri mol "
             "tra sel bon kur fi na do re xa po lyn gra the phy cro mag ser ton pha zo").split()


def _old_archives() -> list[str]:
    return sorted(a for a in OLD_ARCHIVES if a not in ("cs",)) + ["cs"]


class KaggleGenerator:
    """Deterministic (per seed) Kaggle-shaped records; `lines(n)` yields n JSON lines (bytes)."""

    def __init__(self, seed: int = 0, tail_words: int = 200_000) -> None:
        self.rng = np.random.default_rng(seed)
        self.random = random.Random(seed)
        # ranks 1-300: arXiv's common words; then our snapshot's words (its topic words, which are
        # niche in all of arXiv: "collapse" lands in about 0.5 % of abstracts) shuffled among the
        # made-up technical words of the tail's first 8,000 ranks; then the rest of the tail
        head = list(dict.fromkeys(COMMON_WORDS))
        topical = [w for w in self._head_words() if w not in set(head)]
        tail = {self._made_up(3 + i % 3) for i in range(tail_words * 2)}
        tail = sorted(tail - set(head) - set(topical))[:tail_words]
        self.random.shuffle(tail)
        middle = topical + tail[: max(0, 8_000 - len(topical))]
        self.random.shuffle(middle)
        self.vocab = np.array(head + middle + tail[max(0, 8_000 - len(topical)) :], dtype=object)
        weights = 1.0 / np.arange(1, len(self.vocab) + 1) ** 1.05
        self.cdf = np.cumsum(weights / weights.sum())
        self.surname_list = COMMON_SURNAMES + sorted({self._made_up(2 + i % 2).capitalize() for i in range(60_000)})
        self.surname_cum = list(itertools.accumulate(1.0 / k**0.9 for k in range(1, len(self.surname_list) + 1)))
        self.category_cum = list(itertools.accumulate(1.0 / k**0.8 for k in range(1, len(CATEGORIES) + 1)))
        self._pool: list[str] = []

    def _made_up(self, syllables: int) -> str:
        return "".join(self.random.choice(SYLLABLES) for _ in range(syllables))

    @staticmethod
    def _head_words() -> list[str]:
        """The words of the packaged snapshot, most frequent first: arXiv-like common words."""
        import re
        from collections import Counter

        from tools.snapshot import _packaged_bytes

        counts: Counter[str] = Counter()
        for line in _packaged_bytes().decode().splitlines():
            if line.strip():
                record = orjson.loads(line)
                counts.update(re.findall(r"[a-z][a-z-]+", f"{record.get('title', '')} {record.get('summary', '')}".lower()))
        return [word for word, _ in counts.most_common()]

    def _words(self, n: int) -> list[str]:
        """n words drawn from the Zipf vocabulary (drawn 1M at a time: numpy is fast in bulk only)."""
        if len(self._pool) < n:
            self._pool += self.vocab[np.searchsorted(self.cdf, self.rng.random(1_000_000))].tolist()
        words, self._pool[-n:] = self._pool[-n:], []
        return words

    def _months(self, n: int) -> list[tuple[str, int, int]]:
        """n (era, year, month), in arXiv's proportions: submissions grew about 9 % a year."""
        months = []
        year, month = 1991, 8
        while (year, month) <= (2025, 12):
            era = "old" if (year, month) <= (2007, 3) else ("new4" if year <= 2014 else "new5")
            months.append((era, year, month))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        weights = np.array([1.09 ** (y - 1991) for _, y, _ in months])
        picks = np.sort(self.rng.choice(len(months), size=n, p=weights / weights.sum()))
        return [months[i] for i in picks]

    def lines(self, n: int, *, bad_lines: int = 0) -> Iterator[bytes]:
        """n records in ID order (as the Kaggle file is, roughly), and `bad_lines` broken ones among them."""
        counters: dict[tuple, int] = {}
        archives = _old_archives()
        bad_at = set(self.rng.choice(n, size=min(bad_lines, n), replace=False).tolist()) if bad_lines else set()
        for index, (era, year, month) in enumerate(self._months(n)):
            if era == "old":
                archive = archives[int(self.rng.integers(len(archives)))]
                key = (archive, year, month)
                counters[key] = counters.get(key, 0) + 1
                paper_id = f"{archive}/{year % 100:02d}{month:02d}{counters[key]:03d}"
                if counters[key] > 999:
                    continue  # an archive's month holds at most 999 old-style numbers
            else:
                key = ("new", year, month)
                counters[key] = counters.get(key, 0) + 1
                paper_id = f"{year % 100:02d}{month:02d}.{counters[key]:0{4 if era == 'new4' else 5}d}"
            line = orjson.dumps(self.record(paper_id, year, month))
            if index in bad_at:
                line = line[: len(line) // 2]  # a truncated line, as a cut download leaves
            yield line + b"\n"

    def record(self, paper_id: str, year: int, month: int) -> dict:
        r = self.random
        title_words = self._words(max(3, min(28, int(r.gauss(10, 3.5)))))
        title_words[0] = title_words[0].capitalize()
        if len(title_words) > 9:  # Kaggle keeps arXiv's line breaks in titles: a newline and two spaces
            title_words[8] += "\n "
        title = " ".join(title_words)
        words = self._words(max(30, min(300, int(r.gauss(140, 55)))))
        start = 0
        while start < len(words):  # sentences of 12-30 words
            words[start] = words[start].capitalize()
            start += r.randint(12, 30)
            words[min(start, len(words)) - 1] += "."
        lines = [" ".join(words[i : i + 11]) for i in range(0, len(words), 11)]  # ~80-column lines
        abstract = "  " + "\n".join(lines) + "\n"
        parsed = []
        for _ in range(min(1 + int(np.log(1 - r.random()) / np.log(0.65)), 40)):  # geometric, mean ~2.9
            surname = self.surname_list[bisect.bisect(self.surname_cum, r.random() * self.surname_cum[-1]) - 1]
            initials = " ".join(f"{chr(65 + r.randrange(26))}." for _ in range(r.randint(1, 2)))
            parsed.append([surname, initials, ""])
        names = [f"{first} {last}" for last, first, _ in parsed]
        authors = f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
        categories = " ".join(dict.fromkeys(
            CATEGORIES[bisect.bisect(self.category_cum, r.random() * self.category_cum[-1]) - 1] for _ in range(r.randint(1, 3))))
        created = datetime(year, month, r.randint(1, 28), r.randrange(24), r.randrange(60), r.randrange(60), tzinfo=timezone.utc)
        versions = []
        for number in range(1, min(1 + int(np.log(1 - r.random()) / np.log(0.4)), 9) + 1):
            versions.append({"version": f"v{number}", "created": created.strftime("%a, %-d %b %Y %H:%M:%S GMT")})
            created += timedelta(days=r.randint(1, 200))
        has_journal = r.random() < 0.35
        return {
            "id": paper_id,
            "submitter": f"{parsed[0][1]} {parsed[0][0]}",
            "authors": authors,
            "title": title,
            "comments": f"{r.randint(4, 60)} pages, {r.randint(0, 15)} figures" if r.random() < 0.7 else None,
            "journal-ref": f"Phys. Rev. {r.choice('ABDEL')} {r.randint(1, 110)}, {r.randint(1, 99999)} ({year})" if has_journal else None,
            "doi": f"10.{r.randint(1000, 9999)}/{paper_id.replace('/', '.')}" if has_journal and r.random() < 0.8 else None,
            "report-no": None,
            "categories": categories,
            "license": "http://arxiv.org/licenses/nonexclusive-distrib/1.0/" if r.random() < 0.6 else None,
            "abstract": abstract,
            "versions": versions,
            "update_date": (created.date() - timedelta(days=r.randint(0, 30))).isoformat(),
            "authors_parsed": parsed,
        }


def write_kaggle_file(path: Path, n: int, *, seed: int = 0, bad_lines: int = 0, tail_words: int = 200_000) -> list[str]:
    """Write n Kaggle-shaped lines to `path`; returns a sample of up to 5,000 of their IDs."""
    generator = KaggleGenerator(seed, tail_words=tail_words)
    sample: list[str] = []
    seen = 0
    with path.open("wb") as out:
        for line in generator.lines(n, bad_lines=bad_lines):
            out.write(line)
            if line.startswith(b'{"id":"') and line.rstrip().endswith(b"]]}"):
                seen += 1
                paper_id = line[7 : line.index(b'"', 7)].decode()
                if len(sample) < 5_000:
                    sample.append(paper_id)
                elif (j := generator.random.randrange(seen)) < 5_000:
                    sample[j] = paper_id
    return sample


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quantiles(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms (n={len(ms)})"


def _timed(calls: list[Callable[[], object]]) -> list[float]:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


FLOOR_RECORDS = 50_000


def _full_text_floor(snapshot: Snapshot, path: Path) -> str:
    """How fast SQLite's FTS5 alone indexes these records, on one core, with no Python in the loop:
    the ingested records' FTS values are put in a plain table, then copied into an empty FTS table
    of the index's own schema by one `INSERT ... SELECT`. Printed beside the ingest rate, it says how
    much of the ingest is the full-text index itself, which no parsing or batching can speed up."""
    import sqlite3

    from tools.snapshot import _FTS_SCHEMA, _fts_values

    rows = [(rowid, *_fts_values(orjson.loads(record)))
            for rowid, record in snapshot.read("SELECT rowid, record FROM papers ORDER BY rowid LIMIT ?", (FLOOR_RECORDS,))]
    db = sqlite3.connect(path)
    try:
        db.execute(_FTS_SCHEMA)
        db.execute("INSERT INTO papers_fts (papers_fts, rank) VALUES ('hashsize', ?)", (64 << 20,))  # as the index
        db.execute("CREATE TABLE source (rowid INTEGER PRIMARY KEY, title, summary, findings, topics, authors, period)")
        with db:
            db.executemany("INSERT INTO source VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        start = time.perf_counter()
        with db:
            db.execute("INSERT INTO papers_fts (rowid, title, summary, findings, topics, authors, period) "
                       "SELECT rowid, title, summary, findings, topics, authors, period FROM source")
        seconds = time.perf_counter() - start
    finally:
        db.close()
        path.unlink(missing_ok=True)
    return (f"full-text floor: FTS5 alone (in C, one core, no Python) indexes {len(rows):,} of these records in "
            f"{seconds:.2f} s = {len(rows) / seconds:,.0f} records/s ({seconds / len(rows) * 1e6:.0f} us/record)")


def _selective_against_exact(snapshot: Snapshot, queries: list[str], papers: list) -> str:
    """What a large index's selective search gives up: for each query, its top 10 beside the top 10
    of scoring every matching paper (what an index under `exact_search_limit` does), and whether
    each finds the paper the query was made from (query i from papers[i % len(papers)])."""
    if len(snapshot) <= snapshot.exact_search_limit:
        return "selective search: not used at this size (every match is scored)"
    if not queries:
        return "selective vs exact search: not measured (--exact 0)"
    shared, found, found_exact, exact_times = [], 0, 0, []
    for index, query in enumerate(queries):
        target = papers[index % len(papers)].id
        selective = [p.id for p, _ in snapshot.search(query, limit=10)]
        limit = snapshot.exact_search_limit
        snapshot.exact_search_limit = len(snapshot) + 1
        try:
            start = time.perf_counter()
            exact = [p.id for p, _ in snapshot.search(query, limit=10)]
            exact_times.append(time.perf_counter() - start)
        finally:
            snapshot.exact_search_limit = limit
        shared.append(len(set(selective) & set(exact)) / max(1, len(exact)))
        found += target in selective
        found_exact += target in exact
    return (f"selective vs exact search ({len(queries)} queries): top 10s share {statistics.mean(shared):.0%}; the "
            f"paper a query came from is in the top 10 for {found}/{len(queries)} (exact: {found_exact}/{len(queries)}); "
            f"exact scoring took {_quantiles(exact_times)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad-lines", type=int, default=3)
    parser.add_argument("--embed", type=int, default=20_000, help="papers to embed for the dense measurements")
    parser.add_argument("--embedder", choices=("hashed", "minilm"), default="hashed")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--citations", type=int, default=40)
    parser.add_argument("--exact", type=int, default=40, help="queries also scored exactly, to compare (slow at scale)")
    parser.add_argument("--keep", type=Path, default=None, help="build in DIR and keep it (default: a temporary dir)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep DIR: measure the index already built there (no generation, no ingest)")
    args = parser.parse_args(argv)
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep DIR, the folder of an index built before")

    from tools.dense import dense_index
    from tools.embeddings import LexicalEmbedder, get_embedder
    from tools.grounding import is_flagged, verify_text
    from tools.retrieval import find_related
    from tools.sources import open_source

    with tempfile.TemporaryDirectory() as scratch:
        home = args.keep or Path(scratch)
        home.mkdir(parents=True, exist_ok=True)
        data, index_path = home / "arxiv-metadata-oai-snapshot.json", home / "snapshot.sqlite"
        if args.reuse:
            if not index_path.exists():
                parser.error(f"--reuse: {index_path} does not exist (build it once with --keep {home})")
            snapshot = Snapshot.open(index_path)
            # the sample of held IDs, drawn from the index instead of from the generated file
            step = max(1, len(snapshot) // 5_000)
            sample = [paper_id for (paper_id,) in snapshot.read("SELECT id FROM papers WHERE origin = 'kaggle' AND rowid % ? = 0 LIMIT 5000", (step,))]
            print(f"reusing the index in {home} ({len(snapshot):,} papers): generation and ingest not measured")
        else:
            start = time.perf_counter()
            sample = write_kaggle_file(data, args.records, seed=args.seed, bad_lines=args.bad_lines)
            print(f"generated {args.records:,} Kaggle-shaped lines ({data.stat().st_size / 1e6:,.0f} MB, "
                  f"{data.stat().st_size / args.records:,.0f} bytes/line) in {time.perf_counter() - start:.1f} s")

            snapshot = Snapshot.open(index_path)
            rss_before = _rss_mb()
            report = snapshot.ingest_kaggle(data)
            size = sum(p.stat().st_size for p in home.glob("snapshot.sqlite*"))
            print(f"ingest: {report.written:,} papers ({report.skipped} bad lines skipped: {report.bad_lines[:2]}) in "
                  f"{report.seconds:.1f} s = {report.written / report.seconds:,.0f} records/s; index {size / 1e6:,.0f} MB "
                  f"({size / max(1, len(snapshot)):,.0f} bytes/paper); peak RSS {_rss_mb():,.0f} MB (before ingest {rss_before:,.0f} MB)")
            print(_full_text_floor(snapshot, home / "floor.sqlite"))

        rng = random.Random(args.seed)
        ids = [rng.choice(sample) for _ in range(1800)] + [f"2{rng.randint(100, 512)}.{rng.randint(90000, 99999)}" for _ in range(200)]
        rng.shuffle(ids)
        snapshot.get(ids[0])
        print(f"lookup (get): {_quantiles(_timed([lambda i=i: snapshot.get(i) for i in ids]))}")

        held = snapshot.get_many(rng.sample(sample, min(len(sample), 400)))
        papers = list(held.values())
        generator = KaggleGenerator(args.seed + 1, tail_words=1_000)
        queries = []
        for index in range(args.queries):
            paper = papers[index % len(papers)]
            words = paper.title.split()
            pick = rng.sample(words, min(len(words), rng.randint(3, 6)))
            queries.append(" ".join(pick + generator._words(rng.randint(2, 6))))
        last = max(p.published for p in papers)
        since = last - timedelta(days=182)
        snapshot.search(queries[0], limit=60)
        print(f"search, limit 60: {_quantiles(_timed([lambda q=q: snapshot.search(q, limit=60) for q in queries]))}")
        print(f"search, limit 60, 6-month window: "
              f"{_quantiles(_timed([lambda q=q: snapshot.search(q, since=since, until=last, limit=60) for q in queries]))}")
        print(_selective_against_exact(snapshot, queries[: args.exact], papers))
        surnames = [p.authors[0].split()[-1] for p in papers[: args.queries]]
        print(f"papers by author (surname + text, limit 50): "
              f"{_quantiles(_timed([lambda s=s, q=q: snapshot.by_authors([s], text=q) for s, q in zip(surnames, queries)]))}")

        embedder = get_embedder("minilm") if args.embedder == "minilm" else LexicalEmbedder(dim=384)
        index = dense_index(snapshot, embedder)
        start = time.perf_counter()
        prepared = index.prepare()
        embedded = index.embed(limit=args.embed)
        seconds = time.perf_counter() - start
        from tools.dense import EXACT_GRAPH_LIMIT

        how = (f"searched exhaustively: at most {EXACT_GRAPH_LIMIT:,} vectors" if index.count() <= EXACT_GRAPH_LIMIT
               else f"searched by HNSW: more than {EXACT_GRAPH_LIMIT:,} vectors")
        print(f"dense: embedded {prepared + embedded:,} papers ({index.key}) in {seconds:.1f} s = "
              f"{(prepared + embedded) / seconds:,.0f} papers/s into the usearch graph ({how})")
        vectors = embedder.encode(queries[:100])
        print(f"dense nearest (k=30 of {index.count():,} embedded): "
              f"{_quantiles(_timed([lambda v=v: index.nearest(v, since=None, until=None, k=30) for v in vectors]))}")
        print(f"dense nearest, 6-month window: "
              f"{_quantiles(_timed([lambda v=v: index.nearest(v, since=since, until=last, k=30) for v in vectors]))}")
        print(f"find_related (FTS 60 + dense 30, re-ranked; {index.key}): "
              f"{_quantiles(_timed([lambda q=q: find_related(q, snapshot, embedder, since=since, until=last, limit=10) for q in queries[:100]]))}")

        source = open_source("snapshot", cache_path=None, snapshot=snapshot, embedder=embedder)
        texts = []
        for paper in papers[: args.citations]:
            surname = paper.authors[0].split()[-1]
            texts.append(f"{surname} et al. ({paper.year}) show that {paper.title.lower()} (arXiv:{paper.id}).")
        run_date = date(2026, 1, 1)
        start = time.perf_counter()
        verify_text(texts[0], source, run_date=run_date, embedder=embedder)
        warm = time.perf_counter() - start
        times = _timed([lambda t=t: verify_text(t, source, run_date=run_date, embedder=embedder) for t in texts[1:]])
        print(f"grounding, per citation (offline, {index.key}): {_quantiles(times)}; first citation {warm:.2f} s "
              "(judge warm-up: the 400-paper background encoded once per run)")
        # correct at this size? each sentence as written, and with the next paper's ID (a real paper, the wrong one)
        swapped = [text.replace(f"arXiv:{paper.id}", f"arXiv:{papers[(i + 1) % len(texts)].id}")
                   for i, (text, paper) in enumerate(zip(texts, papers))]
        right = Counter(c.status for t in texts for c in verify_text(t, source, run_date=run_date, embedder=embedder))
        wrong = Counter(c.status for t in swapped for c in verify_text(t, source, run_date=run_date, embedder=embedder))
        print(f"grounding verdicts ({len(texts)} citations): as written {dict(right.most_common())}; with the next "
              f"paper's ID {dict(wrong.most_common())} (flagged: {sum(n for k, n in wrong.items() if is_flagged(k))})")
        snapshot.close()
        print(f"peak RSS {_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
