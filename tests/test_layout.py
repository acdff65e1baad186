"""The layout's rules, checked on the source: data flows one way, and each stage imports only
what it may (DEVELOPERS.md: the calibration maths imports no model, file or index code; encoders
know nothing of calibration or indexes; the index knows vectors and ids, not models)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mixsearch"

# stage -> mixsearch modules/packages it must never import
FORBIDDEN = {
    "calibration/core.py": {
        "encoders",
        "embedding",
        "index",
        "engine",
        "ingest",
        "bench",
        "cli",
        "eval",
        "calibration.io",
        "calibration.fit",
    },
    "index": {"encoders", "embedding", "calibration", "engine", "ingest", "bench", "cli", "eval"},
    "encoders": {"calibration", "index", "engine", "embedding", "bench", "cli", "eval"},
    "ingest": {"encoders", "embedding", "calibration", "index", "engine", "bench", "cli", "eval"},
    "embedding": {"calibration", "index", "engine", "bench", "cli", "eval"},
    "eval": {"encoders", "embedding", "calibration", "index", "engine", "ingest", "bench", "cli"},
    "engine": {"bench", "cli", "demo", "server"},
    # the server is a face like the CLI: over the public API, never the other way round
    "server": {"bench", "cli", "demo", "training"},
    "bench": {"cli", "demo"},
    # the audit reads indexes through the engine's public API; its numbers are plain numpy (stats.py)
    "audit": {"bench", "cli", "demo", "server", "training"},
    "audit/stats.py": {"encoders", "embedding", "calibration", "index", "engine", "ingest", "bench", "cli", "eval"},
}
# the only libraries the calibration maths may use
CORE_THIRD_PARTY = {"numpy", "typing", "collections", "__future__"}


def mixsearch_imports(path: Path) -> tuple[set[str], set[str]]:
    """(mixsearch modules imported, as dotted names below the package; other top-level modules)."""
    module = path.relative_to(PACKAGE).with_suffix("")
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module.parts[: len(module.parts) - node.level])
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}".strip(".") for a in node.names] if not node.module else [target]
                ours.update(n for n in names if n)
            elif node.module.split(".")[0] == "mixsearch":
                ours.add(node.module.removeprefix("mixsearch").strip("."))
            else:
                others.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (
                    ours.add(alias.name.removeprefix("mixsearch."))
                    if alias.name.startswith("mixsearch")
                    else others.add(alias.name.split(".")[0])
                )
    return ours, others


def files_of(stage: str) -> list[Path]:
    target = PACKAGE / stage
    return [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_stage_imports_only_what_it_may(stage):
    for path in files_of(stage):
        ours, _ = mixsearch_imports(path)
        bad = {m for m in ours for f in FORBIDDEN[stage] if m == f or m.startswith(f + ".")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_calibration_maths_is_plain_numpy():
    _, others = mixsearch_imports(PACKAGE / "calibration" / "core.py")
    assert others <= CORE_THIRD_PARTY, others


def test_nothing_but_the_entry_points_imports_the_cli():
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "cli") or path.name == "__main__.py":
            continue
        ours, _ = mixsearch_imports(path)
        assert not any(m == "cli" or m.startswith("cli.") for m in ours), path
