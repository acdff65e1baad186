"""What a plain ``pip install mixsearch`` (no extras) can run: every library the core imports is a
core dependency, every optional one goes through ``errors.require`` naming the extra that has it,
and an install with no extras builds an index and searches it with ``--where``."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mixsearch"

#: Subpackages only an extra's install imports (their ``__init__`` docstring names the extra):
#: their modules may import that extra's libraries (and what those depend on) plainly.
EXTRA_ONLY = {"server": "serve", "training": "train"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {canonical(re.match(r"[A-Za-z0-9._-]+", r.strip()).group(0)) for r in requirements}


@cache
def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def core() -> set[str]:
    return requirement_names(pyproject()["dependencies"])


def extra(name: str) -> set[str]:
    return requirement_names(pyproject()["optional-dependencies"][name])


def with_dependencies(dists: set[str]) -> set[str]:
    """``dists`` and everything they install (their non-extra requirements, transitively)."""
    seen, todo = set(), list(dists)
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [r for r in requirement_names([r for r in requires if "extra ==" not in r]) if r not in seen]
    return seen


@cache
def distributions_of() -> dict[str, set[str]]:
    return {top: {canonical(d) for d in dists} for top, dists in metadata.packages_distributions().items()}


def distribution(module: str) -> set[str]:
    """The distributions installing ``module`` (one not installed here: the one named like it)."""
    top = module.split(".")[0]
    return distributions_of().get(top) or {canonical(top)}


def third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top != "mixsearch" and top not in sys.stdlib_module_names


def imports_of(path: Path) -> tuple[set[str], dict[str, str]]:
    """(third-party modules imported by an import statement that must succeed, i.e. not under ``if
    TYPE_CHECKING`` nor guarded by ``except ImportError``; ``{module: extra}`` of its ``require(module,
    extra, ...)`` calls)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    # an import under `try: ... except ImportError:` is optional: the code runs on without it
    optional = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.Try)
        and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        )
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    imported, required = set(), {}
    for node in ast.walk(tree):
        if id(node) in typing_only or id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if third_party(a.name)}
        elif isinstance(node, ast.ImportFrom) and not node.level and third_party(node.module):
            imported.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require":
            args = [a.value for a in node.args[:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if len(args) == 2:
                required[args[0]] = args[1]
    return imported, required


def test_every_module_the_core_imports_is_a_core_dependency():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        imported, required = imports_of(path)
        guarded = {m.split(".")[0] for m in required}  # the file asked require() for it first
        subpackage = path.relative_to(PACKAGE).parts[0]
        allowed = core() | (with_dependencies(extra(EXTRA_ONLY[subpackage])) if subpackage in EXTRA_ONLY else set())
        for module in sorted(imported):
            if module.split(".")[0] not in guarded and not distribution(module) & allowed:
                wrong.append(f"{where}: imports {module} ({', '.join(sorted(distribution(module)))})")
        for module, name in required.items():
            if not distribution(module) & (core() | extra(name)):
                wrong.append(f"{where}: require({module!r}, {name!r}), but the {name} extra does not install it")
    assert not wrong, "a plain 'pip install mixsearch' would fail on:\n" + "\n".join(wrong)


def test_extra_only_subpackages_say_which_extra():
    for subpackage, name in EXTRA_ONLY.items():
        doc = ast.get_docstring(ast.parse((PACKAGE / subpackage / "__init__.py").read_text())) or ""
        assert f"[{name}]" in doc or f"``{name}`` extra" in doc, f"mixsearch.{subpackage} should name the {name} extra"


def _run(args: list, env: dict, what: str, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_a_core_install_without_extras_searches_with_where(tmp_path, tiny_clip):
    """pip install torch==2.13.0, then the project with no extras, into a fresh venv; index and
    search there with a metadata filter (0.3.0 crashed: sqlglot came only with [milvus])."""
    venv, source = tmp_path / "venv", tmp_path / "source"
    # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    torch = subprocess.run([*pip, "torch==2.13.0"], env=env, capture_output=True, text=True, timeout=1800)
    if torch.returncode != 0:
        pytest.skip(f"cannot install torch==2.13.0 from the package registry: {torch.stderr.strip()[-500:]}")
    _run([*pip, source], env, "pip install mixsearch (no extras)", timeout=1800)
    python = venv / "bin" / "python"
    for absent in ("fastapi", "pymilvus", "faiss", "ray", "matplotlib"):  # truly no extras
        probe = subprocess.run([python, "-c", f"import {absent}"], env=env, capture_output=True)
        assert probe.returncode != 0, f"{absent} is installed: this is not a core-only install"

    corpus = tmp_path / "corpus.jsonl"
    words = ["a dog on the beach", "a red bike", "a child in the snow", "a cat on grass"]
    records = [{"id": f"d{i}", "text": text, "year": 2020 + i} for i, text in enumerate(words)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    mixsearch = venv / "bin" / "mixsearch"
    _run([mixsearch, "index", corpus, "-o", tmp_path / "idx", "-m", tiny_clip], env, "mixsearch index", timeout=600)
    found = _run(
        [mixsearch, "search", tmp_path / "idx", "a dog", "--where", "year >= 2022", "--json"],
        env,
        "mixsearch search --where",
        timeout=600,
    )
    hits = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    assert sorted(h["id"] for h in hits) == ["d2", "d3"], found.stdout
