"""The page in a real browser: headless Chromium (Debian's ``chromium`` package) driven by
Playwright. It loads the page, types a query, sees thumbnails and badges, uploads an image,
toggles the calibration, follows "more like this", and saves a screenshot.

Skips, saying why, where Playwright or a Chromium binary is missing (CI installs both:
``.ci/run`` runs ``apt-get install -y chromium``). Set MIXSEARCH_SCREENSHOT_DIR to keep the
screenshots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra: pip install 'mixsearch[serve]'")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs Playwright: pip install playwright"
)

from conftest import write_image  # noqa: E402
from server_helpers import XSS, ThreadServer, build_served_index  # noqa: E402

from mixsearch.server import create_app  # noqa: E402


def chromium() -> str:
    candidates = [os.environ.get("MIXSEARCH_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")]
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    pytest.skip("no Chromium binary found (Debian: apt-get install -y chromium; or set MIXSEARCH_CHROMIUM)")


@pytest.fixture(scope="module")
def live(tiny_clip, tmp_path_factory):
    folder = build_served_index(tmp_path_factory.mktemp("browser"), tiny_clip)
    with ThreadServer(create_app([folder])) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def keep(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("MIXSEARCH_SCREENSHOT_DIR"):
        target = Path(os.environ["MIXSEARCH_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def all_images_loaded(page, selector: str, timeout: float = 15) -> bool:
    """Whether every image matching ``selector`` has loaded (waiting up to ``timeout`` s). Polled from
    here: the page's Content-Security-Policy forbids the eval that page.wait_for_function needs."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        loaded = page.eval_on_selector_all(
            selector, "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)"
        )
        if loaded or time.monotonic() > deadline:
            return loaded
        page.wait_for_timeout(100)


def test_search_from_a_browser(live, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs, failures = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: failures.append(str(e)))
    page.goto(live.url + "/")
    assert page.title() == "mixsearch"
    assert all_images_loaded(page, ".gallery img")

    # type a query: thumbnails, badges, scores, the share of each modality, both rankings
    page.fill("#q", "dog beach grass")
    page.press("#q", "Enter")
    page.wait_for_selector("#results .card")
    assert "q=dog+beach+grass" in page.url  # a text search is a shareable address
    assert all_images_loaded(page, "#results .thumb img")
    badges = set(page.locator("[data-column=calibrated] .badge").all_inner_texts())
    assert {"T", "I", "M"} <= badges, badges
    assert page.locator("[data-column=calibrated] .card").count() == 10
    assert page.locator("[data-column=none]").is_visible() and page.locator("[data-column=calibrated]").is_visible()
    assert page.locator("[data-column=calibrated] .share .seg").count() >= 2
    keep(page, tmp_path, "search.png")

    # toggle the calibration: one ranking at a time, remembered in the address
    page.click("label[for=view-none]")
    assert page.locator("[data-column=none]").is_visible()
    assert not page.locator("[data-column=calibrated]").is_visible()
    assert "view=none" in page.url
    page.click("label[for=view-calibrated]")
    assert page.locator("[data-column=calibrated]").is_visible()
    assert not page.locator("[data-column=none]").is_visible()
    page.click("label[for=view-both]")
    assert page.locator("[data-column=none]").is_visible() and page.locator("[data-column=calibrated]").is_visible()

    # a hostile document text shows as text, and runs nothing
    page.fill("#q", f"{XSS} dog beach")
    page.press("#q", "Enter")
    page.wait_for_selector("#results [data-id=xss]")
    shown = page.locator("[data-column=calibrated] [data-id=xss]").inner_text()
    assert XSS in shown
    assert dialogs == []

    # upload an image (with the text: an image+text query)
    photo = write_image(tmp_path / "my photo.png", 42, size=64)
    page.set_input_files("#image", str(photo))
    assert page.locator("#preview").is_visible()
    page.click("button.go")
    page.wait_for_selector(".query-image")
    assert "image+text query" in page.locator(".query-kind").text_content()
    assert all_images_loaded(page, ".query-image")
    assert page.locator("[data-column=calibrated] .card").count() == 10
    keep(page, tmp_path, "upload.png")

    # "more like this" on an image result
    page.locator("[data-column=calibrated] .card .like").first.click()
    page.wait_for_selector(".query-kind")
    assert "like=" in page.url and "more like" in page.locator(".query-kind").text_content()
    first = page.locator("[data-column=calibrated] .card").first
    assert first.get_attribute("data-id") in page.url
    path = keep(page, tmp_path, "more-like-this.png")
    assert path.stat().st_size > 10_000
    assert failures == [] and dialogs == []
    page.close()


def test_bad_input_in_the_browser(live, browser, tmp_path):
    page = browser.new_page()
    page.goto(live.url + "/?q=dog&k=0")
    assert "k must be" in page.locator(".error").inner_text()
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    page.goto(live.url + "/")
    page.set_input_files("#image", str(not_an_image))
    page.click("button.go")
    page.wait_for_selector(".error")
    assert "not an image" in page.locator(".error").inner_text()
    page.close()


def test_metadata_moves_where_and_share_labels_in_the_browser(live, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(live.url + "/?q=dog+beach+grass&k=14")
    page.wait_for_selector("#results .card")
    # each hit's metadata fields
    assert page.locator("[data-column=calibrated] .card .fields dt").first.inner_text() == "year"
    assert page.locator("[data-column=calibrated] .fields").count() >= 12
    # what calibration moved, against the plain ranking (▲n / ▼n / new), in the calibrated column only
    moved = page.locator("[data-column=calibrated] .moved").all_inner_texts()
    assert moved and all(m == "new" or m[0] in "▲▼" for m in moved), moved
    assert page.locator("[data-column=none] .moved").count() == 0
    # every share label is whole: inside its legend, and not cut by it
    for column in ("calibrated", "none"):
        legend = page.locator(f"[data-column={column}] .share-legend")
        box = legend.bounding_box()
        labels = legend.locator("li")
        assert labels.count() >= 2
        for i in range(labels.count()):
            label = labels.nth(i).bounding_box()
            assert box["x"] <= label["x"] and label["x"] + label["width"] <= box["x"] + box["width"] + 0.5
            assert box["y"] <= label["y"] and label["y"] + label["height"] <= box["y"] + box["height"] + 0.5
            fits = labels.nth(i).evaluate("e => e.scrollWidth <= e.clientWidth + 1")
            assert fits, labels.nth(i).inner_text()
    keep(page, tmp_path, "moves-and-fields.png")
    # the where box filters; a bad condition shows the API's message
    page.fill("#where", "source = 'wiki'")
    page.press("#where", "Enter")
    page.wait_for_selector("#results .card")
    assert "where=source" in page.url
    sources = page.locator("[data-column=calibrated] .fields div:has(dt:text-is('source')) dd").all_inner_texts()
    assert sources and set(sources) == {"wiki"}
    page.fill("#where", "colour = 'red'")
    page.press("#where", "Enter")
    page.wait_for_selector(".error")
    assert "unknown field 'colour'" in page.locator(".error").inner_text()
    assert page.input_value("#where") == "colour = 'red'"  # kept, to fix


def _offline(page, requests: list[str]) -> None:
    """Every request the page makes is recorded; any to a host but 127.0.0.1 fails, as offline."""

    def route(r):
        requests.append(r.request.url)
        if r.request.url.startswith("http://127.0.0.1:"):
            r.continue_()
        else:
            r.abort("internetdisconnected")

    page.route("**/*", route)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_render_offline(live, browser, path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    failures: list[str] = []
    violations: list[str] = []
    page.on("pageerror", lambda e: failures.append(str(e)))
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    _offline(page, requests)
    page.goto(live.url + path)
    page.get_by_text("/api/search/batch").first.wait_for(state="visible", timeout=30_000)  # the operations
    assert page.get_by_text("Search with an uploaded image").count() > 0  # the summaries are there too
    assert requests and all(url.startswith(live.url) for url in requests), requests
    # the page's policy blocks nothing of its own; only ReDoc's footer logo from its CDN, never fetched
    assert failures == [] and [v for v in violations if "https://cdn.redoc.ly/" not in v] == [], violations
    page.close()


def test_another_sites_form_cannot_reload_or_search(live, browser):
    """A page elsewhere (served here by Playwright as evil.test) posts a form to /reload and fires
    a search: the browser sends its Sec-Fetch-Site and Origin, and the server refuses both."""
    registry = live.server.config.app.state.registry
    reloads = registry.reloads
    page = browser.new_page()
    evil = (
        f"<form method=post action='{live.url}/reload?force=true' enctype=text/plain>"
        "<input name=a value=b></form>"
        f"<img id=probe src='{live.url}/api/search?q=dog&where=year%3E0'>"
        "<script>document.forms[0].submit()</script>"
    )
    page.route("http://evil.test/**", lambda r: r.fulfill(status=200, content_type="text/html", body=evil))
    with page.expect_navigation(url=f"{live.url}/reload?force=true"):
        page.goto("http://evil.test/")
    assert "cross-site request refused" in page.content()
    assert registry.reloads == reloads
    page.close()
