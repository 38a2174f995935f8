"""CLI conventions: `--version`; choices as typed options whose bad values are one line and exit 2,
answered before torch loads; pyproject.toml declares every package the code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.subprocess_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_version(tmp_path):
    result = run_cli("--version", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"collapse-audit {importlib.metadata.version('collapse-audit')}"


BAD_CHOICES = [
    (["run", "--source", "google"], "--source"), (["run", "--llm", "claude"], "--llm"),
    (["run", "--sim-budget", "huge"], "--sim-budget"), (["run", "--device", "tpu"], "--device"),
    (["recheck", "--source", "web"], "--source"), (["verify-citations", "x.md", "--format", "yaml"], "--format"),
    (["runs", "list", "--format", "csv"], "--format"), (["runs", "show", "R1", "--format", "xml"], "--format"),
    (["claims", "list", "--format", "xml"], "--format"), (["claims", "add", "x", "--durability", "forever"], "--durability"),
    (["schedule", "install", "--llm", "gpt"], "--llm"), (["simulate", "--family", "nope"], "--family"),
    (["simulate", "--executor", "dask"], "--executor"), (["simulate", "--hold", "both"], "--hold"),
    (["simulate", "--no-such-option"], "No such option"),
]


def test_bad_choices_are_one_line_and_exit_2_before_torch_loads():
    """In one process per case, as a user runs it; the choices come from the option's type, so
    nothing heavy is imported to refuse them."""
    script = ("import sys, time; started = time.perf_counter(); from agent.cli import app\n"
              "try:\n    app(sys.argv[1:], prog_name='collapse-audit')\n"
              "except SystemExit as end:\n"
              "    print(end.code, 'torch' in sys.modules, f'{time.perf_counter() - started:.2f}')\n")
    for args, flag in BAD_CHOICES:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
        code, torch_loaded, seconds = done.stdout.split()
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert code == "2" and len(lines) == 1 and lines[0].startswith("error:") and flag in lines[0], (args, done.stderr)
        assert torch_loaded == "False", args
        print(f"{' '.join(args)}: refused in {seconds} s in process, {time.perf_counter() - started:.2f} s with interpreter start")


def test_help_lists_the_choices():
    result = subprocess.run([sys.executable, "-c", "from agent.cli import app; app()", "simulate", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60, env={"COLUMNS": "200", "PATH": ""})
    text = " ".join(result.stdout.split())
    for listed in ("local|ray", "real|total", "mle|unbiased", "tiny|small|full", "auto|cpu|cuda"):
        assert listed in text, listed


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside `try:` whose handler catches its failure: the code runs without it."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            for handler in parent.handlers:
                names = [] if handler.type is None else [
                    n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)]
                if handler.type is None or {"ImportError", "ModuleNotFoundError", "Exception"} & set(names):
                    return True
        node = parent
    return False


def _imports() -> dict[str, set[str]]:
    """Top-level third-party module -> files that import it unconditionally."""
    found: dict[str, set[str]] = {}
    own = {"agent", "tools", "simulations", "prompts", "tests"}
    for folder in ("agent", "tools", "simulations"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in own or top == "__future__" or _optional(node, parents):
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in _imports().items():
        distributions = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not distributions & declared:
            missing[module] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert {"pytest", "hypothesis", "ray"} <= {r.split(">")[0] for r in project["optional-dependencies"]["test"]}
    assert "ruff" in " ".join(project["optional-dependencies"]["dev"])


def test_the_simulations_package_imports_nothing_from_agent_or_tools():
    """simulations/ is the lowest layer: the lab reads top to bottom with no product code under it."""
    upward = []
    for path in sorted((ROOT / "simulations").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            upward += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("agent", "tools")]
    assert upward == []


@pytest.mark.parametrize("package", ["ray", "sentence-transformers", "torch"])
def test_constraints_pin_what_the_extras_install(package):
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert package in pins and importlib.metadata.version(package).startswith(pins[package])
