"""The layout's rules, checked on the source: data flows one way, and each stage imports only
what it may (DEVELOPERS.md: the calibration maths imports no model, file or index code; encoders
know nothing of calibration or indexes; the index knows vectors and ids, not models)."""

import ast
import os
import subprocess
import sys
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
# plain numpy modules every stage may import (the calibration maths included): they import nothing of
# mixsearch and no library but numpy
LEAVES = ("vectors.py", "_version.py")
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


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_nothing_of_ours(leaf):
    ours, others = mixsearch_imports(PACKAGE / leaf)
    assert not ours and others <= CORE_THIRD_PARTY | {"importlib"}, (ours, others)


def test_nothing_but_the_entry_points_imports_the_cli():
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "cli") or path.name == "__main__.py":
            continue
        ours, _ = mixsearch_imports(path)
        assert not any(m == "cli" or m.startswith("cli.") for m in ours), path


# -- import cycles ---------------------------------------------------------------------------------
#
# A cycle means some module runs while another is half-imported: it works until someone reorders an
# import. Two graphs are checked: the imports that run when a module is imported (module level,
# class bodies, try/if blocks), which must have no cycle at all, and those plus the imports deferred
# into functions, where a cycle is the same knot hidden from the interpreter. ``TYPE_CHECKING``
# blocks never run, so they are left out of both.

# Cycles through deferred imports inside engine/, which the engine restructuring (issue 17, "core")
# removes; each is the sorted set of modules in one cycle. Tighten to empty at merge.
ALLOWED_UNTIL_MERGE: set[frozenset[str]] = set()


def module_of(path: Path) -> str:
    """The dotted name below the package ('' for the package itself, 'index' for index/__init__)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(body: list[ast.stmt], deferred: bool):
    """The import statements of ``body`` that run (with ``deferred``, also those in functions)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from import_nodes(node.orelse, deferred)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not deferred:
            continue
        else:  # class bodies, if/try/with blocks and their handlers: their imports run with the module
            children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
            handlers = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.excepthandler)]
            yield from import_nodes(children + [s for h in handlers for s in h.body], deferred)


def imported_modules(name: str, path: Path, deferred: bool) -> set[str]:
    """The mixsearch modules importing ``name`` runs (and, with ``deferred``, its functions may run).

    Importing ``a.b`` runs ``a/__init__`` first, unless ``a`` is a package ``name`` lives in (it is
    already being imported); ``from a import x`` runs the submodule ``a.x`` if there is one, else
    it reads ``x`` from ``a`` itself -- from a half-imported package, if ``a`` contains ``name``.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ancestors = {".".join(name.split(".")[:i]) for i in range(name.count(".") + 1)} - {name} | {""}
    if path.name == "__init__.py":
        ancestors.discard(name)
    found: set[str] = set()

    def run(target: str) -> None:  # importing ``target`` runs each package above it, then it
        parts = target.split(".") if target else []
        for i in range(len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in MODULES and prefix not in ancestors:
                found.add(prefix)

    for node in import_nodes(ast.parse(path.read_text()).body, deferred):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mixsearch":
                    run(alias.name.removeprefix("mixsearch").strip("."))
            continue
        if node.level:
            up = package.split(".") if package else []
            base = up[: len(up) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        elif node.module and node.module.split(".")[0] == "mixsearch":
            target = node.module.removeprefix("mixsearch").strip(".")
        else:
            continue
        run(target)
        for alias in node.names:
            sub = f"{target}.{alias.name}".strip(".")
            if sub in MODULES:
                run(sub)
            elif target in MODULES:
                found.add(target)  # a name read from the module (a package's __init__)
    found.discard(name)
    return found


def import_cycles(deferred: bool) -> list[list[str]]:
    """One cycle (a path a -> ... -> a) per strongly connected group of the import graph, except
    groups inside one of ``ALLOWED_UNTIL_MERGE``."""
    graph = {name: imported_modules(name, path, deferred) for name, path in MODULES.items()}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = {stack.pop()}
            while v not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in order:
            visit(v)
    # each group as its shortest cycle through its first module, for the message
    allowed = [g for g in groups if not any(g <= ok for ok in ALLOWED_UNTIL_MERGE)]
    return [_shortest_cycle(graph, group, min(group)) for group in allowed]


def _shortest_cycle(graph: dict[str, set[str]], group: set[str], start: str) -> list[str]:
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


def _named(cycle: list[str]) -> str:
    return " -> ".join(f"mixsearch.{m}".rstrip(".") for m in cycle)


def test_imports_that_run_form_no_cycle():
    cycles = import_cycles(deferred=False)
    assert not cycles, "import cycles: " + "; ".join(map(_named, cycles))


def test_deferred_imports_form_no_cycle_either():
    cycles = import_cycles(deferred=True)
    assert not cycles, "import cycles through imports inside functions: " + "; ".join(map(_named, cycles))


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    """The check itself: a package re-exporting a module that imports the package back is a cycle,
    through ``from . import x`` as through ``from .x import y``; a TYPE_CHECKING import is not."""
    package = tmp_path / "mixsearch"
    (package / "pkg").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "pkg" / "__init__.py").write_text("from .a import f\nfrom . import b\n\nLIMIT = 1\n")
    (package / "pkg" / "a.py").write_text("from . import b\n\ndef f():\n    from . import LIMIT\n")
    (package / "pkg" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    monkeypatch.setitem(globals(), "MODULES", {module_of(p): p for p in package.rglob("*.py")})
    assert import_cycles(deferred=False) == []
    assert import_cycles(deferred=True) == [["pkg", "pkg.a", "pkg"]]


def test_registries_import_their_entries_on_first_use():
    """The encoder and index-kind registries name the built-in entries by path: importing them
    imports no encoder backend and no Milvus client until one is asked for."""
    code = (
        "import sys\n"
        "from mixsearch.encoders.base import ENCODERS\n"
        "from mixsearch.index.base import INDEX_KINDS, index_kind\n"
        "lazy = ['mixsearch.encoders.transformers', 'mixsearch.encoders.sentence_transformers',\n"
        "        'mixsearch.encoders.vlm', 'mixsearch.index.milvus']\n"
        "assert list(INDEX_KINDS) == ['exact', 'hnsw', 'milvus'], list(INDEX_KINDS)\n"
        "assert list(ENCODERS) == ['sentence-transformers', 'vlm', 'transformers'], list(ENCODERS)\n"
        "assert not [m for m in lazy if m in sys.modules], [m for m in lazy if m in sys.modules]\n"
        "assert index_kind('milvus').kind == 'milvus' and 'mixsearch.index.milvus' in sys.modules\n"
        "assert 'mixsearch.encoders.transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})


def test_user_classes_still_register(monkeypatch):
    from mixsearch.encoders.base import ENCODERS, Encoder, register_encoder
    from mixsearch.index.base import INDEX_KINDS, index_kind, register_index
    from mixsearch.index.exact import ExactIndex

    monkeypatch.setitem(ENCODERS, "mine", None)  # removed again after the test
    monkeypatch.setitem(INDEX_KINDS, "kept", None)

    def mine(source, folder):
        return source == "mine"

    @register_encoder("mine", accepts=mine)
    class Mine(Encoder):
        def _encode_batch(self, batch, modality):
            raise NotImplementedError

    @register_index
    class Kept(ExactIndex):
        kind = "kept"

    assert ENCODERS["mine"] == (Mine, mine) and list(ENCODERS)[-1] == "mine"
    assert index_kind("kept") is Kept and INDEX_KINDS["exact"] is ExactIndex


# -- one error family ------------------------------------------------------------------------------

#: Builtin exceptions mixsearch raises only through its own family (``mixsearch.errors``: each class
#: there also subclasses the builtin, so callers catching ``ValueError`` or ``KeyError`` still do).
BARE = {"ValueError", "KeyError", "RuntimeError", "TypeError", "Exception"}
#: Files other engineers of issue 17 rewrite at the same time ("core", "calib", "server"); their bare
#: raises move into the family with that work. Tighten to empty at merge.
BARE_ALLOWED_UNTIL_MERGE = ("engine/store.py", "engine/build.py", "engine/update.py", "engine/mixindex.py")
BARE_ALLOWED_PACKAGES_UNTIL_MERGE = ("calibration", "server")


def bare_raises(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BARE:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: raise {exc.id}")
    return found


def test_errors_come_from_the_family():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in BARE_ALLOWED_UNTIL_MERGE or name.split("/")[0] in BARE_ALLOWED_PACKAGES_UNTIL_MERGE:
            continue
        found += bare_raises(path)
    assert not found, "raise an error of mixsearch.errors instead:\n" + "\n".join(found)


def test_the_library_errors_carry_no_exit_code():
    """Exit codes are the command line's business (cli._app.exit_code), not the library's."""
    import mixsearch.errors as errors
    from mixsearch.cli._app import exit_code

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.MixsearchError)]
    assert classes and not [c for c in classes if hasattr(c, "exit_code")]
    assert exit_code(errors.UsageError("k")) == 2 and exit_code(errors.InputError("x")) == 1
    assert exit_code(errors.BenchError("x")) == 1 and exit_code(errors.FieldError("year")) == 1
