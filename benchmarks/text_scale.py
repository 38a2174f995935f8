"""How the text entry points scale: hostile single lines, large ordinary files, large claims files.

    python benchmarks/text_scale.py [--case single-line|multi-line|claims|all] [--line-bytes N]
                                    [--multi-line-bytes N] [--claims N] [--timeout S]

- single-line: `extract_citations` on one line of N bytes with no spaces (default 1 MB): the shape
  that made nested-quantifier regexes backtrack for minutes per 16 KB.
- multi-line: `extract_citations` on an ordinary Markdown draft of N bytes (default 10 MB), built
  here: headings, and paragraphs (one per line) in which every other sentence cites, in every
  written form (arXiv IDs, URLs, DOIs, author-year, APA, quoted titles, tables).
- claims: `claims_file_warnings` (what `claims validate` runs after reading) on N claims
  (default 200 000), ids partly repeated, to show it is linear in the number of claims.

Each case prints its input size and the seconds it took. `--timeout` stops a case that runs past
it (reported as "> S s") so a slow build can be measured without waiting for it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_SENTENCES = (
    "Shumailov et al. (2023) showed that recursive training collapses the tails (arXiv:2305.17493).",
    "Gerstgrasser, Schaeffer & Koyejo (2024) found that accumulating data avoids collapse.",
    "See https://arxiv.org/abs/2404.01413v2 for the accumulation result, and “Is Model Collapse Inevitable? Breaking the Curse” for its title.",
    "A later study [2402.07043] measured *Self-Consuming Generative Models Go MAD* on images (Alemohammad et al., 2023).",
    "| 2305.17493 | The curse of recursion | 2023 |",
    "Shumailov, I., Shumaylov, Z., & Anderson, R. (2023). The curse of recursion: training on generated data. arXiv preprint.",
    "Dohmatob and colleagues (2024) give a scaling-law view, 10.48550/arXiv.2402.07712, while Feng et al. disagree.",
    "- Mixing ratios matter more than volume (2024–2025, arXiv:2410.04840).",
)


_PROSE = (
    "Recursive training on generated data narrows the output distribution over generations.",
    "When the real data is kept and new synthetic data is added, the error stays bounded.",
    "The question is what share of synthetic data a pipeline can absorb before quality degrades.",
    "These results depend on how much of the original distribution survives each round of sampling.",
)


def ordinary_text(size: int) -> str:
    """About `size` bytes of a Markdown draft: a heading every 20 paragraphs, paragraphs of four
    sentences (one per line, blank lines between) of which every other one cites."""
    lines, total, index = [], 0, 0
    while total < size:
        if index % 20 == 0:
            lines += [f"## Section {index // 20 + 1}", ""]
        sentences = [_SENTENCES[(index + k) % len(_SENTENCES)] if k % 2 else _PROSE[(index + k) % len(_PROSE)] for k in range(4)]
        lines += [" ".join(sentences), ""]
        total += sum(len(line.encode()) + 1 for line in lines[-2:])
        index += 1
    return "\n".join(lines)


def hostile_line(size: int) -> str:
    """One line of `size` bytes with no spaces: letters that the name patterns match, with a few
    apostrophes and hyphens (both inside `_NAME`) so every start position looks like a name, ending
    in a year so that the line is read in full (a line without a digit cannot cite)."""
    unit, end = "Abcdefg'h-ij", "(2024)"
    return (unit * (size // len(unit) + 1))[: size - len(end)] + end


def run_extract(text: str) -> tuple[float, int]:
    """Seconds `extract_citations` takes on `text`, and how many citations it found."""
    from tools.citations import extract_citations

    started = time.perf_counter()
    found = len(extract_citations(text))
    return time.perf_counter() - started, found


def run_claims(count: int) -> tuple[float, int]:
    """Seconds `claims_file_warnings` takes on `count` claims (built outside the clock), and how many warnings."""
    from agent.claims_store import claims_file_warnings
    from agent.models import Claim

    claims = [
        Claim(id=f"U{n % max(count // 2, 1) + 1}", text=f"Claim number {n} about mixing ratios (2024, arXiv:2404.01413).",
              dated="2024", year_start=2024, year_end=2024, citations=["2404.01413"], tags=["ratio"], origin="user")
        for n in range(count)
    ]
    started = time.perf_counter()
    warnings = len(claims_file_warnings(claims))
    return time.perf_counter() - started, warnings


def _timed(label: str, size_note: str, work: Callable[[Any], tuple[float, int]], argument: Any, timeout: float) -> None:
    """Run `work(argument)` in a child process, so that a runaway case is stopped at `timeout`."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pending = pool.apply_async(work, (argument,))
        try:
            seconds, result = pending.get(timeout)
        except multiprocessing.TimeoutError:
            print(f"{label:<12} {size_note:>16}  > {timeout:.0f} s (stopped)", flush=True)
            pool.terminate()
            return
    print(f"{label:<12} {size_note:>16}  {seconds:8.2f} s  ({result} results)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("single-line", "multi-line", "claims", "all"), default="all")
    parser.add_argument("--line-bytes", type=int, default=1_000_000)
    parser.add_argument("--multi-line-bytes", type=int, default=10_000_000)
    parser.add_argument("--claims", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a case is stopped")
    args = parser.parse_args()
    if args.case in ("single-line", "all"):
        _timed("single-line", f"{args.line_bytes:,} B", run_extract, hostile_line(args.line_bytes), args.timeout)
    if args.case in ("multi-line", "all"):
        text = ordinary_text(args.multi_line_bytes)
        _timed("multi-line", f"{len(text.encode()):,} B", run_extract, text, args.timeout)
    if args.case in ("claims", "all"):
        _timed("claims", f"{args.claims:,} claims", run_claims, args.claims, args.timeout)


if __name__ == "__main__":
    main()
