"""Generate citation test cases from the arXiv snapshot: many shapes and wordings, seeded.

    python benchmarks/citation_cases.py [--out tests/data/citation_cases.jsonl] [--seed 9] [--per-shape N]

Writes JSON lines with the gold set's fields (`case`, `text`, `arxiv_id`, `claimed_year`, `expected`,
`note`) plus `shape` (which generator made it), `split` (`dev` / `heldout`, by a hash of the text,
so a case keeps its half however the generator changes around it) and, where the offline snapshot
cannot decide, `expected_offline` (a real paper only the live API holds, or a fabricated ID, is
`unverifiable` offline: absence needs the live API's proof).

Choose thresholds on the dev half only; report the held-out half (benchmarks/grounding_accuracy.py).

The sentences restate a paper's content from the snapshot's `findings` and `summary` (our own
paraphrases), lightly reworded; grounding compares sentences with title + summary, never findings
alone, so a restatement is not a copy of what it is compared with. Shapes:

- grounded: author-year, `arXiv:ID`, bare ID in brackets, abs / pdf URLs with versions (also above
  the versions the live source lists), the arXiv DOI (prose, doi.org URL, BibTeX `doi`), BibTeX with
  `eprint` / `journal = {arXiv preprint ...}` / `url`, Markdown links, emphasised titles, anchor
  lines, a stated year one off (a conference year), a finding wrapped in field talk, a bare
  reference or a title alone, two-citation sentences (each paper its own
  clause, system names side by side, a joint bracket), real papers only the live API holds;
- wrong_paper: a claim from another field cited with a real paper and its year; only the authors
  and year of A with B's ID; content of A cited with B — B on a different topic (with B's year), B a neighbour on
  the same topic, B by the same author group (the shared author named), A's title quoted or A's
  system named with B's ID, a real ID + real authors with an invented title (quoted or BibTeX), and
  the wrong one of two citations in one sentence;
- year_mismatch: the right paper and content, the stated year 2-4 years off;
- nonexistent / malformed: impossible months, numbers past a month's count, digit-count eras,
  future months, old-style rules; broken shapes (short numbers, letters, underscores, dashes);
- not_found: well-formed, plausible IDs that no paper has (fabrications);
- no_id: dated claims and author-year citations without an identifier.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.arxiv_id import month_ceiling  # noqa: E402

SNAPSHOT = ROOT / "tools" / "data" / "arxiv_snapshot.jsonl"
DEFAULT_OUT = ROOT / "tests" / "data" / "citation_cases.jsonl"
GENERIC_TOPICS = {"llm", "synthetic_data", "data_generation"}

# Real papers the loopback live API serves but the snapshot lacks (tests/arxiv_server.LIVE_ONLY_PAPERS).
LIVE_ONLY = [
    ("1706.03762", ["Vaswani"], 2017, "the Transformer dispenses with recurrence and convolutions entirely, relying on attention alone for machine translation", "Attention Is All You Need"),
    ("1512.03385", ["He"], 2015, "residual connections that learn residual functions make very deep image-recognition networks trainable", "Deep Residual Learning for Image Recognition"),
    ("1406.2661", ["Goodfellow"], 2014, "a generator and a discriminator trained against each other in a two-player game learn the data distribution", "Generative Adversarial Networks"),
    ("2005.14165", ["Brown"], 2020, "a 175-billion-parameter language model performs new tasks few-shot from examples in its prompt", "Language Models are Few-Shot Learners"),
    ("hep-th/9711200", ["Maldacena"], 1997, "the large N limit of superconformal field theories is described by supergravity on anti-de Sitter space", "The Large N Limit of Superconformal Field Theories and Supergravity"),
    ("math/0211159", ["Perelman"], 2002, "a monotone entropy formula for the Ricci flow applies to the geometrization of three-manifolds", "The entropy formula for the Ricci flow and its geometric applications"),
]

# Claims from outside the snapshot's field, for citations of a real paper on a different topic.
OFF_DOMAIN = [
    "convolutional networks with batch normalization train faster at higher learning rates",
    "graph neural networks are at most as powerful as the Weisfeiler-Lehman test at telling graphs apart",
    "protein structures can be predicted to near-experimental accuracy from sequence alone",
    "dropout randomly zeroes activations during training to reduce co-adaptation of units",
    "the Adam optimizer adapts per-parameter learning rates from running moment estimates",
    "vision transformers split an image into patches and match convolutional networks at scale",
    "contrastive pretraining aligns images and captions in a shared embedding space for zero-shot classification",
    "reinforcement learning agents master Atari games directly from pixels with a deep Q-network",
    "word embeddings trained with skip-gram capture analogies as vector offsets",
    "neural radiance fields render novel views of a scene from a sparse set of photographs",
    "quantum error correction with surface codes suppresses logical error rates below threshold",
    "federated learning trains a shared model across devices without collecting their raw data",
]
# Field talk a writer wraps around a finding (it fits many papers, so it must not decide the fit).
CONTEXT = [
    "as synthetic data fills more of the web",
    "which matters for anyone mixing synthetic and real data",
    "a point often missed in debates about the synthetic-to-real ratio",
    "with obvious consequences for recursive training pipelines",
    "echoing broader worries about model collapse",
]

VERBS = ["show", "find", "report", "demonstrate", "argue", "observe", "establish", "conclude"]
SWAPS = {
    "shows": "finds", "show": "find", "demonstrates": "shows", "improves": "boosts", "improve": "boost",
    "reduces": "lowers", "reduce": "lower", "increases": "raises", "large language models": "LLMs",
    "language models": "LMs", "uses": "relies on", "use": "rely on", "proposes": "introduces",
    "significantly": "markedly", "substantially": "considerably", "method": "approach", "methods": "approaches",
    "generated": "produced", "performance": "results", "prevents": "avoids", "prevent": "avoid",
    "dataset": "corpus", "datasets": "corpora", "training": "fine-tuning", "examples": "samples",
}
TITLE_WORDS = (
    "Synthetic Feedback Loops|Recursive Distillation|Tail Preservation|Diversity Budgets|Self-Consuming Pipelines|"
    "Curriculum Resampling|Generative Echo Chambers|Entropy Floors|Mode Coverage|Data Provenance"
).split("|")
TITLE_PATTERNS = [
    "{a} and {b} in Large Language Models",
    "On the Limits of {a}: {b} Revisited",
    "{a} Under {b}: A Theoretical Account",
    "Why {a} Matters for {b}",
    "Towards Robust {a} with {b}",
]


def load_papers(path: Path = SNAPSHOT) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Generator:
    def __init__(self, papers: list[dict], seed: int, run_date: date) -> None:
        self.rng = random.Random(seed)
        self.papers = papers
        self.by_id = {p["id"]: p for p in papers}
        self.run_date = run_date
        self.cases: list[dict] = []

    # --- pieces ------------------------------------------------------------------------------

    def year(self, paper: dict) -> int:
        return int(paper["published"][:4])

    def surname(self, author: str) -> str:
        return author.split()[-1]

    def authors(self, paper: dict) -> str:
        names = [self.surname(a) for a in paper["authors"]]
        if len(names) == 1:
            return f"{names[0]} et al." if paper.get("authors_truncated") else names[0]
        if len(names) == 2 and not paper.get("authors_truncated"):
            return f"{names[0]} and {names[1]}" if self.rng.random() < 0.5 else f"{names[0]} & {names[1]}"
        return f"{names[0]} et al."

    def reword(self, text: str) -> str:
        text = text.strip().rstrip(".")
        if self.rng.random() < 0.6:
            for old, new in SWAPS.items():
                if self.rng.random() < 0.7:
                    text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, text)
        return text

    def content(self, paper: dict, *, short: bool = False) -> str:
        """A restatement of the paper: one finding, or the summary's first sentence, cut short."""
        options = list(paper["findings"])
        first = re.split(r"(?<=[.;])\s", paper["summary"])[0]
        opening = first.split()[:2]
        # summaries often open with a bare verb ("Proposes ...", "Shows that ..."): no clause on their own
        if not (len(opening) == 2 and opening[0].endswith("s") and opening[1][:1].islower()):
            options.append(first)
        text = self.rng.choice(options)
        words = text.split()
        limit = 14 if short else 26
        if len(words) > limit:
            text = " ".join(words[:limit]).rstrip(",;:")
        text = self.reword(text)
        return text[0].lower() + text[1:]

    def system_name(self, paper: dict) -> str | None:
        head = paper["title"].split(":")[0].strip()
        if ":" in paper["title"] and len(head.split()) == 1 and len(head) >= 4:
            return head
        return None

    def short_title(self, paper: dict) -> str:
        return paper["title"].split(":")[0] if ":" in paper["title"] and self.rng.random() < 0.3 else paper["title"]

    def topics(self, paper: dict) -> set[str]:
        return set(paper["topics"]) - GENERIC_TOPICS

    def shared_authors(self, a: dict, b: dict) -> set[str]:
        return set(a["authors"]) & set(b["authors"])

    def other(self, paper: dict, kind: str) -> dict | None:
        pool = [p for p in self.papers if p["id"] != paper["id"] and not self.shared_authors(p, paper)]
        if kind == "different":
            pool = [p for p in pool if not (self.topics(p) & self.topics(paper)) and not (set(p["topics"]) & set(paper["topics"]) - {"llm"})]
        elif kind == "neighbour":
            pool = [p for p in pool if self.topics(p) & self.topics(paper)]
        elif kind == "same_authors":
            pool = [p for p in self.papers if p["id"] != paper["id"] and self.shared_authors(p, paper)]
        return self.rng.choice(pool) if pool else None

    def fake_id(self) -> str:
        held = set(self.by_id) | {i for i, *_ in LIVE_ONLY}
        while True:
            year = self.rng.randint(2016, 2025)
            month = self.rng.randint(1, 12 if year < 2025 else 8)
            number = self.rng.randint(1, int(month_ceiling(year, month) / 1.05 * 0.9))
            candidate = f"{year % 100:02d}{month:02d}.{number:05d}"
            if candidate not in held:
                return candidate

    def make_title(self) -> str:
        a, b = self.rng.sample(TITLE_WORDS, 2)
        return self.rng.choice(TITLE_PATTERNS).format(a=a, b=b)

    def add(self, shape: str, text: str, arxiv_id: str | None, expected: str, note: str, *, claimed_year: int | None = None,
            expected_offline: str | None = None) -> None:
        case = {
            "case": f"g{len(self.cases) + 1}", "text": text, "arxiv_id": arxiv_id, "claimed_year": claimed_year,
            "expected": expected, "note": note, "shape": shape,
            "split": "dev" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2 == 0 else "heldout",
        }
        if expected_offline:
            case["expected_offline"] = expected_offline
        self.cases.append(case)

    # --- correct citations -------------------------------------------------------------------

    def cite_forms(self, paper: dict, year: int) -> tuple[str, str]:
        """A written citation of the paper and its form's name."""
        pid, rng = paper["id"], self.rng
        version = rng.randint(1, 6)
        forms = [
            ("arxiv", f"arXiv:{pid}"),
            ("arxiv-version", f"arXiv:{pid}v{version}"),
            ("abs-url", f"https://arxiv.org/abs/{pid}"),
            ("abs-url-version", f"https://arxiv.org/abs/{pid}v{version}"),
            ("pdf-url", f"https://arxiv.org/pdf/{pid}v{version}.pdf"),
            ("pdf-url-bare", f"arxiv.org/pdf/{pid}"),
            ("doi", f"doi:10.48550/arXiv.{pid}"),
            ("doi-url", f"https://doi.org/10.48550/arXiv.{pid}"),
            ("arxiv-space", f"arXiv {pid}"),
        ]
        return rng.choice(forms)

    def grounded(self, paper: dict) -> None:
        rng = self.rng
        year = self.year(paper) + (rng.choice([0, 0, 0, 1]) if self.year(paper) < self.run_date.year else 0)
        who = self.authors(paper)
        form, cite = self.cite_forms(paper, year)
        content = self.content(paper)
        verb = rng.choice(VERBS)
        templates = [
            ("author-year-tail", f"{content[0].upper()}{content[1:]} ({who}, {year}, {cite})."),
            ("author-lead", f"{who} ({year}) {verb} that {content} ({cite})."),
            ("bracket-bare", f"{content[0].upper()}{content[1:]} [{paper['id']}]."),
            ("as-shown", f"As {who} ({year}) {verb}, {content} ({cite})."),
            ("according", f"{content[0].upper()}{content[1:]}, according to {who} ({year}; {cite})."),
            ("emph-title", f"In *{self.short_title(paper)}*, {who} ({year}) {verb} that {content} ({cite})."),
            ("md-link", f"[{paper['title']}](https://arxiv.org/abs/{paper['id']}) {verb}s that {content}."),
            ("md-link-id", f"{who} {verb} that {content} ([arXiv:{paper['id']}](https://arxiv.org/abs/{paper['id']}))."),
            ("quoted-title", f"{who} ({year}), \"{paper['title']}\", {verb} that {content} ({cite})."),
            ("preprint", f"{who}'s {year} preprint ({cite}) finds that {content}."),
            ("anchor", f"– arXiv:{paper['id']} ({year}): {content[0].upper()}{content[1:]}."),
            ("bold-list", f"**{who} ({year})** — {content} ({cite})."),
        ]
        shape, text = rng.choice(templates)
        self.add(f"grounded/{shape}/{form}", text, paper["id"], "grounded", f"{paper['title']}; stated {year}, v1 {paper['published']}", claimed_year=year)

    def grounded_bibtex(self, paper: dict) -> None:
        rng = self.rng
        key = f"{self.surname(paper['authors'][0]).lower()}{self.year(paper)}"
        authors = " and ".join(
            f"{a.split()[-1]}, {' '.join(a.split()[:-1])}" if rng.random() < 0.5 else a for a in paper["authors"][:6]
        ) + (" and others" if paper.get("authors_truncated") or len(paper["authors"]) > 6 else "")
        pid = paper["id"]
        where = rng.choice([
            ("eprint", f"  eprint = {{{pid}}},\n  archivePrefix = {{arXiv}},\n"),
            ("doi", f"  doi = {{10.48550/arXiv.{pid}}},\n  publisher = {{arXiv}},\n"),
            ("journal", f"  journal = {{arXiv preprint arXiv:{pid}}},\n"),
            ("url", f"  url = {{https://arxiv.org/abs/{pid}}},\n"),
            ("corr", f"  journal = {{CoRR}},\n  volume = {{abs/{pid}}},\n"),
        ])
        title = self.short_title(paper) if where[0] != "doi" else paper["title"]
        text = f"@{rng.choice(['article', 'misc', 'inproceedings'])}{{{key},\n  title = {{{title}}},\n  author = {{{authors}}},\n  year = {{{self.year(paper)}}},\n{where[1]}}}"
        self.add(f"grounded/bibtex/{where[0]}", text, pid, "grounded", paper["title"], claimed_year=self.year(paper))

    def grounded_live_only(self) -> None:
        pid, names, year, content, title = self.rng.choice(LIVE_ONLY)
        version = self.rng.randint(1, 9)
        forms = [f"arXiv:{pid}", f"https://arxiv.org/abs/{pid}v{version}", f"doi:10.48550/arXiv.{pid}"]
        who = f"{names[0]} et al." if names[0] not in ("Maldacena", "Perelman") else names[0]
        text = self.rng.choice([
            f"{content[0].upper()}{content[1:]} ({who}, {year}, {self.rng.choice(forms)}).",
            f"{who} ({year}) showed that {content} ({self.rng.choice(forms)}).",
        ])
        self.add("grounded/live-only", text, pid, "grounded", f"{title}: only the live API holds it", claimed_year=year, expected_offline="unverifiable")

    def two_citations(self, a: dict, b: dict, evaluate_second: bool) -> None:
        rng = self.rng
        ya, yb = self.year(a), self.year(b)
        ca, cb = self.content(a, short=True), self.content(b, short=True)
        wa, wb = self.authors(a), self.authors(b)
        na, nb = self.system_name(a), self.system_name(b)
        options = [
            ("clauses", f"{ca[0].upper()}{ca[1:]} ({wa}, {ya}, arXiv:{a['id']}), while {cb} ({wb}, {yb}, arXiv:{b['id']})."),
            ("subjects", f"{wa} ({ya}, arXiv:{a['id']}) {rng.choice(VERBS)} that {ca}, whereas {wb} ({yb}, arXiv:{b['id']}) {rng.choice(VERBS)} that {cb}."),
            ("semicolon", f"{ca[0].upper()}{ca[1:]} (arXiv:{a['id']}); {cb} (arXiv:{b['id']})."),
        ]
        if na and nb:
            options.append(("names", f"{na} (arXiv:{a['id']}) and {nb} (arXiv:{b['id']}) both address {rng.choice(['synthetic data', 'data generation', 'this problem'])}: {ca}, and {cb}."))
        shape, text = rng.choice(options)
        target = b if evaluate_second else a
        self.add(f"grounded/two/{shape}", text, target["id"], "grounded", f"two citations; evaluated {target['title']}", claimed_year=self.year(target))

    def joint(self, a: dict, b: dict) -> None:
        ca, cb = self.content(a, short=True), self.content(b, short=True)
        target = self.rng.choice([a, b])
        text = f"{ca[0].upper()}{ca[1:]}, and {cb} ({self.year(a)}, arXiv:{a['id']}; {self.year(b)}, arXiv:{b['id']})."
        self.add("grounded/two/joint", text, target["id"], "grounded", f"joint bracket; evaluated {target['title']}", claimed_year=self.year(target))

    def grounded_loose(self, paper: dict) -> None:
        """Realistic wrappings: a finding inside field talk, a bare reference, a title alone."""
        rng, who, year = self.rng, self.authors(paper), self.year(paper)
        content = self.content(paper, short=True)
        context = rng.choice(CONTEXT)
        shape, text = rng.choice([
            ("context-before", f"{context[0].upper()}{context[1:]}, {content} ({who}, {year}, arXiv:{paper['id']})."),
            ("context-after", f"{content[0].upper()}{content[1:]} (arXiv:{paper['id']}), {rng.choice(CONTEXT)}."),
            ("minimal", f"See {who} ({year}, arXiv:{paper['id']})."),
            ("minimal-preprint", f"{who}, arXiv preprint arXiv:{paper['id']}, {year}."),
            ("title-only", f"{who}, *{paper['title']}* ({year}), https://arxiv.org/abs/{paper['id']}."),
            ("title-quoted-only", f"\"{paper['title']}\" ({who}, {year}; arXiv:{paper['id']})."),
        ])
        self.add(f"grounded/loose/{shape}", text, paper["id"], "grounded", paper["title"], claimed_year=year)

    # --- flagged ------------------------------------------------------------------------------

    def off_domain(self, paper: dict) -> None:
        """A claim from another field cited with a real paper and that paper's own year."""
        rng, year = self.rng, self.year(paper)
        claim = rng.choice(OFF_DOMAIN)
        text = rng.choice([
            f"{claim[0].upper()}{claim[1:]} ({year}, arXiv:{paper['id']}).",
            f"A {year} study {rng.choice(VERBS)}s that {claim} (https://arxiv.org/abs/{paper['id']}).",
            f"{claim[0].upper()}{claim[1:]} ({self.authors(paper)}, {year}, arXiv:{paper['id']}).",
        ])
        self.add("wrong_paper/off-domain", text, paper["id"], "wrong_paper", f"{paper['title']} is not about: {claim}", claimed_year=year)

    def wrong_minimal(self, a: dict) -> None:
        """Only authors and a year, and they belong to another paper."""
        b = self.other(a, "any")
        if b is None:
            return
        text = self.rng.choice([
            f"See {self.authors(a)} ({self.year(a)}, arXiv:{b['id']}).",
            f"{self.authors(a)}, arXiv preprint arXiv:{b['id']}, {self.year(a)}.",
        ])
        self.add("wrong_paper/minimal-authors", text, b["id"], "wrong_paper", f"authors of {a['id']} ({a['title']}) with the ID of {b['id']}", claimed_year=self.year(a))

    def wrong_paper(self, a: dict, kind: str) -> None:
        b = self.other(a, kind)
        if b is None:
            return
        rng = self.rng
        content = self.content(a)
        if kind == "different":
            # the writer's year is the cited paper's own: only the content can tell
            year = self.year(b)
            text = rng.choice([
                f"{content[0].upper()}{content[1:]} ({year}, arXiv:{b['id']}).",
                f"Work from {year} {rng.choice(VERBS)}s that {content} (https://arxiv.org/abs/{b['id']}).",
            ])
            note = f"sentence restates {a['id']} ({a['title']}); cites {b['id']} ({b['title']}), a different topic, with its year"
        elif kind == "neighbour":
            year = self.year(a)
            text = rng.choice([
                f"{content[0].upper()}{content[1:]} ({self.authors(a)}, {year}, arXiv:{b['id']}).",
                f"{content[0].upper()}{content[1:]} (arXiv:{b['id']}).",
                f"{self.authors(a)} ({year}) {rng.choice(VERBS)} that {content} (arXiv:{b['id']}).",
            ])
            note = f"sentence restates {a['id']} ({a['title']}); cites {b['id']} ({b['title']}) on a neighbouring topic"
        else:
            shared = sorted(self.shared_authors(a, b))[0]
            year = self.year(a)
            text = rng.choice([
                f"{self.surname(shared)} et al. ({year}) {rng.choice(VERBS)} that {content} (arXiv:{b['id']}).",
                f"{content[0].upper()}{content[1:]} ({self.surname(shared)} et al., {year}, arXiv:{b['id']}).",
            ])
            note = f"sentence restates {a['id']} ({a['title']}); cites {b['id']} ({b['title']}) by the same author ({shared})"
        self.add(f"wrong_paper/{kind}", text, b["id"], "wrong_paper", note, claimed_year=year)

    def wrong_by_title_or_name(self, a: dict) -> None:
        b = self.other(a, "neighbour") or self.other(a, "any")
        name = self.system_name(a)
        rng = self.rng
        if name and rng.random() < 0.5:
            text = f"{name} {rng.choice(VERBS)}s that {self.content(a, short=True)} (arXiv:{b['id']})."
            shape = "system-name"
        else:
            text = f"In \"{a['title']}\", the authors {rng.choice(VERBS)} that {self.content(a, short=True)} (arXiv:{b['id']})."
            shape = "quoted-title"
        self.add(f"wrong_paper/{shape}", text, b["id"], "wrong_paper", f"names {a['id']} ({a['title']}); cites {b['id']} ({b['title']})", claimed_year=self.year(a))

    def invented_title(self, paper: dict) -> None:
        title = self.make_title()
        year = self.year(paper)
        who = self.authors(paper)
        if self.rng.random() < 0.5:
            authors = " and ".join(paper["authors"][:4])
            text = f"@article{{x{year},\n  title = {{{title}}},\n  author = {{{authors}}},\n  year = {{{year}}},\n  eprint = {{{paper['id']}}},\n  archivePrefix = {{arXiv}}\n}}"
            shape = "bibtex"
        else:
            text = self.rng.choice([
                f"{who} ({year}), \"{title}\", arXiv:{paper['id']}.",
                f"See {who}, *{title}* ({year}, arXiv:{paper['id']}).",
                f"{who} ({year}) {self.rng.choice(VERBS)} in \"{title}\" that {self.content(paper, short=True)} (arXiv:{paper['id']}).",
            ])
            shape = "prose"
        self.add(f"wrong_paper/invented-title/{shape}", text, paper["id"], "wrong_paper", f"real ID and authors of {paper['title']}, invented title {title!r}", claimed_year=year)

    def wrong_in_pair(self, a: dict) -> None:
        b = self.other(a, "any")
        c = self.other(b, "different") if b else None
        if b is None or c is None or c["id"] in (a["id"], b["id"]):
            return
        ca, cb = self.content(a, short=True), self.content(b, short=True)
        text = f"{ca[0].upper()}{ca[1:]} (arXiv:{a['id']}), while {cb} (arXiv:{c['id']})."
        self.add("wrong_paper/two", text, c["id"], "wrong_paper", f"second clause restates {b['id']} ({b['title']}) but cites {c['id']} ({c['title']})", claimed_year=None)
        self.add("grounded/two/other-wrong", text, a["id"], "grounded", f"first clause, {a['title']}, is right; the second citation is wrong", claimed_year=None)

    def year_mismatch(self, paper: dict) -> None:
        rng = self.rng
        gap = rng.choice([2, 2, 3, 4])
        year = self.year(paper) + (gap if rng.random() < 0.4 else -gap)
        if year > self.run_date.year + 2:
            year = self.year(paper) - gap
        who, content = self.authors(paper), self.content(paper)
        text = rng.choice([
            f"{content[0].upper()}{content[1:]} ({who}, {year}, arXiv:{paper['id']}).",
            f"{who} ({year}) {rng.choice(VERBS)} that {content} (https://arxiv.org/abs/{paper['id']}).",
            f"In {year}, {who} {rng.choice(VERBS)} that {content} (arXiv:{paper['id']}).",
        ])
        self.add("year_mismatch", text, paper["id"], "year_mismatch", f"{paper['title']}: v1 {paper['published']}, stated {year}", claimed_year=year)

    def impossible(self) -> None:
        rng = self.rng
        paper = rng.choice(self.papers)
        content = self.content(paper, short=True)
        kinds = [
            ("month", f"{rng.randint(18, 25)}{rng.choice(['00', '13', '14', '19', '22', '31', '99'])}.{rng.randint(1000, 19999):05d}"),
            ("ceiling", f"{rng.randint(16, 24)}{rng.randint(1, 12):02d}.{rng.randint(40000, 99999)}"),
            ("five-digit-early", f"{rng.randint(8, 14):02d}{rng.randint(1, 12):02d}.{rng.randint(10000, 99999)}"),
            ("four-digit-late", f"{rng.randint(15, 25)}{rng.randint(1, 12):02d}.{rng.randint(1000, 9999)}"),
            ("future", f"{rng.randint(30, 39)}{rng.randint(1, 12):02d}.{rng.randint(1, 20000):05d}"),
            ("new-style-early", f"0{rng.randint(1, 6)}{rng.randint(1, 12):02d}.{rng.randint(1000, 9999)}"),
            ("old-style-late", f"{rng.choice(['hep-th', 'math', 'cs', 'quant-ph'])}/{rng.randint(8, 20):02d}{rng.randint(1, 12):02d}{rng.randint(1, 999):03d}"),
            ("old-archive", f"{rng.choice(['ml', 'stat-ml', 'ai', 'nlp'])}/{rng.randint(95, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 999):03d}"),
        ]
        kind, written = rng.choice(kinds)
        text = rng.choice([
            f"{content[0].upper()}{content[1:]} ({self.authors(paper)}, {self.year(paper)}, arXiv:{written}).",
            f"{self.authors(paper)} {rng.choice(VERBS)} that {content} (arXiv:{written}).",
        ])
        self.add(f"nonexistent/{kind}", text, written, "nonexistent", f"{kind}: {written} cannot exist")

    def broken(self) -> None:
        rng = self.rng
        paper = rng.choice(self.papers)
        pid = paper["id"]
        kinds = [
            ("short", pid[: rng.randint(7, 8)]),
            ("letter-o", pid.replace("0", "O", 1) if "0" in pid else pid[:5] + "O" + pid[6:]),
            ("underscore", pid.replace(".", "_")),
            ("dash", pid.replace(".", "-")),
            ("letter-tail", pid[:-1] + "a"),
            ("long", pid + str(rng.randint(0, 9))),
            ("version-zero", pid + "v0"),
        ]
        kind, written = rng.choice(kinds)
        content = self.content(paper, short=True)
        text = rng.choice([
            f"{content[0].upper()}{content[1:]} ({self.authors(paper)}, {self.year(paper)}, arXiv:{written}).",
            f"{content[0].upper()}{content[1:]} (arXiv:{written}).",
        ])
        self.add(f"malformed/{kind}", text, written, "malformed", f"{kind}: {written} is no identifier shape")

    def fabricated(self) -> None:
        paper = self.rng.choice(self.papers)
        fake = self.fake_id()
        content = self.content(paper)
        text = self.rng.choice([
            f"{content[0].upper()}{content[1:]} ({self.authors(paper)}, {self.year(paper)}, arXiv:{fake}).",
            f"{content[0].upper()}{content[1:]} (https://arxiv.org/abs/{fake}).",
            f"Recent work {self.rng.choice(VERBS)}s that {content} (arXiv:{fake}).",
        ])
        self.add("not_found/fabricated", text, fake, "not_found", f"{fake} is plausible but no paper has it", expected_offline="unverifiable")

    def no_id(self, paper: dict) -> None:
        content, who, year = self.content(paper), self.authors(paper), self.year(paper)
        text = self.rng.choice([
            f"{content[0].upper()}{content[1:]} ({who}, {year}).",
            f"{who} ({year}) {self.rng.choice(VERBS)} that {content}.",
            f"{content[0].upper()}{content[1:]} ({year}–{year + 1}).",
        ])
        self.add("no_id", text, None, "no_id", f"restates {paper['id']} without an identifier", claimed_year=year)

    # --- all ----------------------------------------------------------------------------------

    def generate(self, per_shape: int) -> list[dict]:
        rng, papers = self.rng, self.papers
        for _ in range(per_shape * 4):
            self.grounded(rng.choice(papers))
        for _ in range(per_shape):
            self.grounded_bibtex(rng.choice(papers))
            self.grounded_live_only()
            self.grounded_loose(rng.choice(papers))
            self.off_domain(rng.choice(papers))
        for _ in range(per_shape):
            a, b = rng.sample(papers, 2)
            self.two_citations(a, b, evaluate_second=rng.random() < 0.5)
        for _ in range(per_shape // 2):
            a = rng.choice(papers)
            b = self.other(a, "neighbour")
            if b:
                self.joint(a, b)
        with_coauthors = [p for p in papers if any(self.shared_authors(p, q) for q in papers if q is not p)]
        for _ in range(per_shape):
            self.wrong_paper(rng.choice(papers), "different")
            self.wrong_paper(rng.choice(papers), "neighbour")
            self.wrong_paper(rng.choice(with_coauthors), "same_authors")
            self.wrong_by_title_or_name(rng.choice(papers))
            self.invented_title(rng.choice(papers))
        for _ in range(per_shape // 2):
            self.wrong_in_pair(rng.choice(papers))
            self.wrong_minimal(rng.choice(with_coauthors + papers))
        for _ in range(per_shape):
            self.year_mismatch(rng.choice(papers))
            self.impossible()
            self.broken()
            self.fabricated()
            self.no_id(rng.choice(papers))
        # one case per text: a repeat would sit in both halves' statistics
        unique, seen = [], set()
        for case in self.cases:
            if (case["text"], case["arxiv_id"]) not in seen:
                seen.add((case["text"], case["arxiv_id"]))
                unique.append(case)
        for number, case in enumerate(unique, start=1):
            case["case"] = f"g{number}"
        return unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--per-shape", type=int, default=24)
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    args = parser.parse_args()
    # Run date for the "future month" shapes: they use 2030+, so any date before 2030 works.
    cases = Generator(load_papers(args.snapshot), args.seed, date(2026, 11, 24)).generate(args.per_shape)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    counts = Counter(c["expected"] for c in cases)
    splits = Counter(c["split"] for c in cases)
    print(f"{len(cases)} cases -> {args.out}: {dict(sorted(counts.items()))}; {dict(splits)}")


if __name__ == "__main__":
    main()
