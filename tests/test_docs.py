"""The documentation as users meet it: every Python example of README.md and docs/*.md runs as
written (or is marked, just before it, with ``<!-- not-run: reason -->``), the site builds with
``mkdocs build --strict``, and the built site loads nothing from the network."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_image

import mixsearch as ms

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not-run:(?P<reason>.*?)-->\s*\Z", re.S)


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """Each ```python block of a page: its first line's number, its code and, when the HTML comment
    just before it says ``not-run: reason``, the reason."""
    text = page.read_text()
    blocks = []
    for fence in FENCE.finditer(text):
        if fence["info"].strip() != "python":
            continue
        mark = NOT_RUN.search(text[: fence.start()].rstrip() + "\n")
        reason = mark["reason"].strip() if mark else None
        blocks.append((text.count("\n", 0, fence.start()) + 2, fence["code"], reason))
    return blocks


RUNNABLE = [p for p in PAGES if any(reason is None for _, _, reason in python_blocks(p))]


def test_every_python_block_is_run_or_marked():
    """A block no test would run must say why; no block hides behind another info string."""
    for page in PAGES:
        text = page.read_text()
        for fence in FENCE.finditer(text):
            info = fence["info"].strip()
            assert info == "python" or not info.startswith("py"), f"{name(page)}: write ```python, not ```{info}"
        for line, _, reason in python_blocks(page):
            assert reason != "", f"{name(page)}:{line}: a not-run mark needs its reason"
        marks = len(re.findall(r"^<!--\s*not-run:", text, re.M))
        assert marks == sum(reason is not None for _, _, reason in python_blocks(page)), (
            f"{name(page)}: a not-run mark must come just before a ```python block"
        )
    assert {name(p) for p in RUNNABLE} >= {"README.md", "docs/python.md", "docs/updates.md"}


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory):
    """What the examples name: photos/, queries.txt, texts.txt, corpus.jsonl (with metadata),
    more.jsonl, and my-index built from the corpus with the bundled model."""
    root = tmp_path_factory.mktemp("examples")
    (root / "photos").mkdir()
    for i in range(4):
        write_image(root / "photos" / f"p{i}.png", i)
    write_image(root / "photos" / "query.jpg", 9)
    (root / "queries.txt").write_text("a dog on the beach\nchildren in the snow\n")
    (root / "texts.txt").write_text("A brown dog runs along the sand by the sea .\nTwo kids build a snowman .\n")
    docs = [
        {"id": "t1", "text": "a dog running on the beach", "year": 2021, "source": "wiki"},
        {"id": "i1", "image": "photos/p0.png", "year": 2019, "source": "news"},
        {"id": "m1", "text": "a red ball on the grass", "image": "photos/p1.png", "year": 2022, "source": "wiki"},
        {"id": "d1", "image": "photos/p2.png", "year": 2023, "source": "wiki"},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    more = [{"id": "d7", "text": "two kids build a snowman", "year": 2024, "source": "wiki"}]
    (root / "more.jsonl").write_text("".join(json.dumps(d) + "\n" for d in more))
    ms.build_index(root / "corpus.jsonl", root / "my-index", "mixclip-flickr8k", progress=False)
    return root


def check_python_guide(ns: dict) -> None:
    """What docs/python.md promises beyond running (the assertions of the README test of 0.3)."""
    index, results = ns["index"], ns["results"]
    assert len(results) == 2 and all(len(hits) == 3 for hits in results)
    assert index.manifest.calibration.method == "none"  # recalibrate changed this very object...
    assert ms.open_index("my-index").manifest.calibration.method == "none"  # ...and the folder
    assert len(index.search("a dog", k=2)) == 2  # and it still searches


def check_readme(ns: dict) -> None:
    results = ns["results"]
    assert len(results) == 2 and all(len(hits) == 3 for hits in results)
    assert ns["plain"].calibrator.method == "none" and ns["index"].calibrator.method == "mean"


def check_updates(ns: dict) -> None:
    index = ms.open_index("my-index")
    assert sorted(index.ids) == ["i1", "m1", "t1"]  # d7 added, then d1 and d7 deleted
    assert {"year", "source"} <= set(index.fields())


CHECKS = {"docs/python.md": check_python_guide, "README.md": check_readme, "docs/updates.md": check_updates}


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, id=name(p)) for p in RUNNABLE],
)
def test_page_examples_run_as_written(page, example_folder, tmp_path, monkeypatch):
    """A page's runnable blocks, in order, in one namespace, in a fresh copy of the example folder."""
    work = tmp_path / "work"
    shutil.copytree(example_folder, work)
    monkeypatch.chdir(work)
    ns: dict = {"__name__": "__docs__"}
    for line, code, reason in python_blocks(page):
        if reason is None:
            exec(compile(code, f"{name(page)}, block at line {line}", "exec"), ns)
    if name(page) in CHECKS:
        CHECKS[name(page)](ns)


def test_readme_is_a_landing_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert text.startswith("# mixsearch\n\n```bash\nmake demo ")  # the two commands come first
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return out


def test_site_builds_strict_with_every_page_and_the_api(site):
    assert (site / "index.html").is_file() and (site / "serve.png").is_file()
    api = (site / "api.html").read_text()
    for public in ("MixIndex", "open_index", "build_index", "Calibrator", "Hit", "UsageError", "Client", "audit_index"):
        assert re.search(rf'id="mixsearch\.(?:client\.|audit\.)?{public}"', api), public
    assert "Hardening" in (site / "changelog.html").read_text()  # CHANGELOG.md included, not copied
    assert "Architecture" in (site / "model-card.html").read_text()  # and the model card


# what a page would fetch by itself: scripts, styles, fonts, frames, images (plain <a href> links are fine)
EXTERNAL = [
    re.compile(r"<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=[\"']?(?:https?:)?//", re.I),
    re.compile(r"<link\b[^>]*\bhref=[\"']?(?:https?:)?//", re.I),
    re.compile(r"@import\s+(?:url\()?[\"']?(?:https?:)?//", re.I),
    re.compile(r"url\([\"']?(?:https?:)?//", re.I),
]


def test_site_loads_nothing_from_the_network(site):
    """Offline docs: no web fonts, CDN scripts or styles (Material's Google Fonts are off)."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix in (".html", ".css", ".js"):
            text = path.read_text(errors="replace")
            for pattern in EXTERNAL:
                found += [f"{path.relative_to(site)}: {m.group(0)[:120]}" for m in pattern.finditer(text)]
    assert not found, "the built site fetches from the network:\n" + "\n".join(found[:20])
