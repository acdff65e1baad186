"""The server's API and page through FastAPI's test client: every endpoint, every error, the same
answers as the Python API, token, media safety, upload limits, escaping, reload."""

from __future__ import annotations

import asyncio
import html
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra: pip install 'mixsearch[serve]'")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from server_helpers import XSS, build_served_index  # noqa: E402

import mixsearch as ms  # noqa: E402
from mixsearch.server import create_app  # noqa: E402
from mixsearch.server.errors import status_of  # noqa: E402


@pytest.fixture(scope="module")
def index_folder(tiny_clip, tmp_path_factory):
    return build_served_index(tmp_path_factory.mktemp("served"), tiny_clip)


@pytest.fixture(scope="module")
def app(index_folder):
    return create_app([index_folder])


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def local(index_folder):
    index = ms.open_index(index_folder)
    return index, index.with_calibration("none")


def png_bytes(seed=0, size=40, mode="RGB", fmt="PNG") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def same_hits(answer: list[dict], hits: list[ms.Hit]) -> None:
    assert [h["id"] for h in answer] == [h.id for h in hits]
    assert [h["score"] for h in answer] == pytest.approx([h.score for h in hits], abs=1e-6)
    assert [h["modality"] for h in answer] == [h.modality for h in hits]


# -- status ------------------------------------------------------------------------------------


def test_health_and_info(client, index_folder):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["indexes"]["index"]["documents"] == 14
    info = client.get("/info").json()
    assert info["default"] == "index"
    about = info["indexes"]["index"]
    assert (
        about["documents"]["text"] == 5 and about["documents"]["image"] == 5 and about["documents"]["multimodal"] == 4
    )
    assert about["model"]["fingerprint"] == ms.open_index(index_folder).model.fingerprint
    assert about["calibration"]["method"] == "mean" and "source" in about["calibration"]
    assert "counts" in about["calibration"] and "provenance" in about["calibration"]
    assert about["views"] == {"calibrated": "mean", "none": "none"}


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/info", "/reload", "/api/search", "/api/search/batch", "/api/documents/{doc_id}"):
        assert path in paths, path


# -- search: the same answers as the Python API ------------------------------------------------


def test_text_search_is_the_python_api(client, local):
    index, plain = local
    answer = client.get("/api/search", params={"q": "dog on the beach", "k": 5}).json()
    assert answer["query"] == {"text": "dog on the beach", "kind": "text"}
    assert (
        answer["index"] == "index" and answer["k"] == 5 and answer["model"]["name"] == Path(index.model.name).name
    )  # a folder: its name, not the path
    assert answer["calibration"]["view"] == "calibrated" and answer["calibration"]["method"] == "mean"
    same_hits(answer["hits"], index.search("dog on the beach", k=5))
    plain_answer = client.get("/api/search", params={"q": "dog on the beach", "k": 5, "calibration": "plain"}).json()
    assert plain_answer["calibration"]["method"] == "none" and plain_answer["calibration"]["view"] == "none"
    same_hits(plain_answer["hits"], plain.search("dog on the beach", k=5))
    none_answer = client.get("/api/search", params={"q": "dog on the beach", "k": 5, "calibration": "none"}).json()
    assert none_answer["hits"] == plain_answer["hits"]
    for asked in ("multimodal", "image+text", "IT", "I+T", "image_text"):  # one name, its aliases taken
        only = client.get("/api/search", params={"q": "dog", "k": 3, "modality": asked}).json()
        assert only["modality"] == ["multimodal"] and {h["modality"] for h in only["hits"]} == {"multimodal"}


def test_modality_filter(client, local):
    index, _ = local
    for asked, engine in (("image", ["image"]), ("image+text", ["multimodal"]), ("text,image", ["text", "image"])):
        answer = client.get("/api/search", params={"q": "red ball", "k": 20, "modality": asked}).json()
        assert {h["modality"] for h in answer["hits"]} <= set(engine)
        same_hits(answer["hits"], index.search("red ball", k=20, modality=engine))


def test_where_filter_on_metadata(client, local):
    index, _ = local
    where = "year >= 2014 AND source = 'wiki'"
    answer = client.get("/api/search", params={"q": "red ball", "k": 20, "where": where}).json()
    assert answer["where"] == where and answer["hits"]
    assert all(h["metadata"]["year"] >= 2014 and h["metadata"]["source"] == "wiki" for h in answer["hits"])
    same_hits(answer["hits"], index.search("red ball", k=20, where=where))
    batch = client.post("/api/search/batch", json={"queries": ["red ball"], "k": 20, "where": where}).json()
    assert batch["results"][0]["hits"] == answer["hits"]
    bad = client.get("/api/search", params={"q": "red ball", "where": "colour = 'red'"})
    assert bad.status_code == 422 and "colour" in bad.json()["detail"] and "year" in bad.json()["detail"]
    sneaky = client.get("/api/search", params={"q": "x", "where": "year IN (SELECT 1 FROM read_csv('/etc/passwd'))"})
    assert sneaky.status_code == 422


def test_image_and_image_text_upload(client, local, index_folder):
    index, plain = local
    data = png_bytes(3)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    answer = client.post("/api/search", files={"image": ("query.png", data, "image/png")}, data={"k": "4"}).json()
    assert answer["query"]["kind"] == "image" and answer["query"]["image"] == "query.png"
    same_hits(answer["hits"], index.search(image=image, k=4))
    both = client.post(
        "/api/search",
        files={"image": ("q.png", data, "image/png")},
        data={"q": "a dog", "k": "4", "calibration": "plain", "modality": "text"},
    ).json()
    assert both["query"]["kind"] == "image+text" and both["calibration"]["view"] == "none"  # plain: an alias
    same_hits(both["hits"], plain.search("a dog", image=image, k=4, modality="text"))


def test_more_like_this_uses_the_stored_embedding(client, local, index_folder):
    index, _ = local
    answer = client.get("/api/search", params={"like": "i2", "k": 3}).json()
    assert answer["query"] == {"text": None, "like": "i2", "kind": "image"}
    assert answer["hits"][0]["id"] == "i2" and answer["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    path = index.documents["image"][index.ids.index("i2")]
    same_hits(answer["hits"], index.search(image=path, k=3))
    text_doc = client.get("/api/search", params={"like": "t1", "k": 2}).json()  # a text document: its text
    assert text_doc["hits"][0]["id"] == "t1"


def test_batch(client, local):
    index, plain = local
    body = {"queries": ["a dog", {"text": "snow"}, {"like": "m1"}, {"like": "m1", "text": "grass"}], "k": 3}
    answer = client.post("/api/search/batch", json=body).json()
    assert [r["query"]["kind"] for r in answer["results"]] == ["text", "text", "image", "image+text"]
    for r, text in zip(answer["results"][:2], ("a dog", "snow")):
        same_hits(r["hits"], index.search(text, k=3))
    assert answer["results"][2]["hits"][0]["id"] == "m1"
    single = client.get("/api/search", params={"like": "m1", "q": "grass", "k": 3}).json()
    assert answer["results"][3]["hits"] == single["hits"]
    plain_answer = client.post("/api/search/batch", json={**body, "calibration": "plain"}).json()
    same_hits(plain_answer["results"][0]["hits"], plain.search("a dog", k=3))
    none_answer = client.post("/api/search/batch", json={**body, "calibration": "none"}).json()
    assert none_answer["results"] == plain_answer["results"] and none_answer["calibration"]["view"] == "none"


# -- documents and media ------------------------------------------------------------------------


def test_document_and_media(client):
    doc = client.get("/api/documents/m1").json()
    assert doc["id"] == "m1" and doc["modality"] == "multimodal" and doc["text"] and doc["image"] == "m1.png"
    assert "/" not in doc["image"]  # the server's paths stay on the server
    original = client.get(doc["image_url"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(original.content)).size == (40, 40)
    thumb = client.get("/api/thumbnail/m1", params={"size": 16})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 16
    assert client.get(doc["thumbnail_url"]).status_code == 200
    assert client.get("/api/documents/t0").json().get("image") is None
    assert client.get("/api/media/t0").status_code == 404  # no image to serve


def raw_get(app, path: str, query: bytes = b"") -> int:
    """Status of a GET whose path goes to the app exactly as written (no client normalises it)."""
    status = {}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status["code"] = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return status["code"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/media/../../../../etc/passwd",
        "/api/media/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/media/%2e%2e/%2e%2e/etc/passwd",
        "/api/media//etc/passwd",
        "/api/media/%2Fetc%2Fpasswd",
        "/api/media/img/i1.png",
        "/api/media/escaped",  # a recorded image that is a symlink out of the corpus
        "/api/thumbnail/escaped",
        "/api/thumbnail/../corpus.jsonl",
        "/api/documents/../../etc/passwd",
        "/static/../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/app.py",
    ],
)
def test_media_only_by_document_id(app, client, path):
    assert client.get(path).status_code == 404, path
    assert raw_get(app, path) == 404, path


def test_media_of_recorded_absolute_path_and_other_index_names(client, local):
    index, _ = local
    recorded = index.documents["image"][index.ids.index("i1")]
    assert client.get("/api/media/" + recorded).status_code == 404
    assert client.get("/api/media/i1", params={"index": "../index"}).status_code == 404
    assert client.get("/api/media/i1").status_code == 200


def test_a_media_file_removed_after_indexing_is_404(tiny_clip, tmp_path):
    folder = build_served_index(tmp_path, tiny_clip)
    (tmp_path / "corpus" / "img" / "i0.png").unlink()
    with TestClient(create_app([folder])) as c:
        assert c.get("/api/media/i0").status_code == 404
        assert c.get("/api/thumbnail/i0").status_code == 404
        assert c.get("/api/media/i1").status_code == 200


# -- errors: 4xx with a message, never a 500 ----------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"q": "dog", "k": 0}, 422, "k"),
        ({"q": "dog", "k": -3}, 422, "k"),
        ({"q": "dog", "k": "abc"}, 422, "k"),
        ({"q": "dog", "k": 100000}, 422, "k"),
        ({"q": "dog", "k": "1.5"}, 422, "k"),
        ({"q": "dog", "modality": "pictures"}, 422, "multimodal"),
        ({"q": "dog", "modality": "all,text"}, 422, "all"),
        ({"q": "dog", "calibration": "fancy"}, 422, "calibration"),
        ({}, 422, "empty query"),
        ({"q": "   "}, 422, "empty query"),
        ({"q": "dog", "index": "nope"}, 404, "no index named"),
        ({"like": "nope"}, 404, "no document"),
        ({"like": "t1", "q": "dog"}, 422, "no image"),
        ({"q": "x" * 20000}, 422, "q"),
    ],
)
def test_bad_parameters(client, params, status, words):
    response = client.get("/api/search", params=params)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_bad_batches(client):
    assert client.post("/api/search/batch", json={"queries": []}).status_code == 422
    assert client.post("/api/search/batch", json={"queries": ["a"] * 257}).status_code == 422
    assert client.post("/api/search/batch", json={"queries": ["a", ""]}).status_code == 422
    assert client.post("/api/search/batch", json={"queries": ["a"], "k": 0}).status_code == 422
    assert client.post("/api/search/batch", json={"queries": [{"like": "zzz"}]}).status_code == 404
    assert (
        client.post("/api/search/batch", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert client.post("/api/search/batch", json={"queries": "a dog"}).status_code == 422


def test_bad_uploads(client):
    def upload(data, name="q.png", **fields):
        return client.post("/api/search", files={"image": (name, data, "image/png")}, data=fields)

    text = upload(b"just some text, not an image", "notes.png")
    assert text.status_code == 415 and "not an image" in text.json()["detail"]
    assert upload(b"").status_code == 415
    truncated = upload(png_bytes()[:120])
    assert truncated.status_code == 400 and "unreadable image" in truncated.json()["detail"]
    svg = upload(b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "x.svg")
    assert svg.status_code == 415
    both = upload(png_bytes(), like="i1")
    assert both.status_code == 422 and "not both" in both.json()["detail"]


def big_bilevel_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_limits(index_folder):
    small = create_app([index_folder], max_upload_bytes=50_000, max_pixels=1_000_000)
    with TestClient(small) as c:
        too_big = c.post("/api/search", files={"image": ("big.png", png_bytes(size=300), "image/png")})
        assert too_big.status_code == 413 and "upload limit" in too_big.json()["detail"]
        many_pixels = big_bilevel_png(2000, 1000)  # 2 MP in a few kB
        assert len(many_pixels) < 50_000
        refused = c.post("/api/search", files={"image": ("wide.png", many_pixels, "image/png")})
        assert refused.status_code == 413 and "pixels" in refused.json()["detail"]
        chunked = c.post(
            "/api/search",
            content=iter([b"x" * 40_000, b"x" * 40_000]),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert chunked.status_code == 413


def test_pillow_decompression_bomb_guard(index_folder):
    bomb = big_bilevel_png(12_000, 8_000)  # 96 MP, over Pillow's own MAX_IMAGE_PIXELS
    with TestClient(create_app([index_folder], max_pixels=10**12)) as c:
        response = c.post("/api/search", files={"image": ("bomb.png", bomb, "image/png")})
    assert response.status_code == 413 and "decompression bomb" in response.json()["detail"]


def test_uploads_touch_no_disk_outside_a_temp_area(client, index_folder, tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(p.name for p in index_folder.rglob("*"))
    big = png_bytes(size=700)  # over the multipart parser's 1 MB in-memory size: spooled to the temp area
    assert len(big) > 1_000_000
    assert client.post("/api/search", files={"image": ("x.png", big, "image/png")}).status_code == 200
    assert client.post("/", files={"image": ("x.png", big, "image/png")}).status_code == 200
    assert client.post("/api/search", files={"image": ("x.png", b"nope" * 300_000, "image/png")}).status_code == 415
    assert list(spool.iterdir()) == [] and list(work.iterdir()) == []
    assert sorted(p.name for p in index_folder.rglob("*")) == before


def test_error_statuses_in_one_place():
    from mixsearch.server.errors import NotAnImage, UploadTooLarge
    from mixsearch.server.state import NotFound

    assert status_of(ms.UsageError("x")) == 422
    assert status_of(ms.InputError("x")) == 400
    assert status_of(NotFound("x")) == 404
    assert status_of(UploadTooLarge("x")) == 413
    assert status_of(NotAnImage("x")) == 415
    assert status_of(ms.VectorIndexError("x")) == 503
    assert status_of(RuntimeError("x")) == 500


# -- the token ----------------------------------------------------------------------------------


def test_token(index_folder):
    app = create_app([index_folder], token="s3cret/+=")
    with TestClient(app) as c:
        for path in (
            "/health",
            "/info",
            "/api/search?q=dog",
            "/api/media/i1",
            "/",
            "/docs",
            "/openapi.json",
            "/static/app.js",
        ):
            assert c.get(path).status_code == 401, path
        assert c.get("/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/api/search", files={"image": ("q.png", png_bytes(), "image/png")}).status_code == 401
        assert c.get("/health", headers={"Authorization": "Bearer s3cret/+="}).status_code == 200
        page = c.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and "token" in page.text.lower()
        assert c.get("/?token=wrong").status_code == 401
        login = c.get("/", params={"token": "s3cret/+=", "q": "dog"}, follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/?q=dog"
        assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=Strict" in login.headers["set-cookie"]
        c.cookies.set("mixsearch_token", login.cookies["mixsearch_token"])
        assert c.get("/?q=dog").status_code == 200
        assert c.get("/api/thumbnail/i1").status_code == 200


def test_serve_refuses_other_addresses_without_a_token():
    from mixsearch.server.run import check_address

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_address(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(ms.UsageError, match="token"):
            check_address(host, None)
        check_address(host, "a-token")


def test_serve_command_refuses_without_token():
    from typer.testing import CliRunner

    from mixsearch.cli import app

    result = CliRunner().invoke(app, ["serve", "somewhere", "--host", "0.0.0.0"], env={"MIXSEARCH_TOKEN": ""})
    assert result.exit_code == 2 and "token" in result.output


# -- the page -----------------------------------------------------------------------------------


def test_page(client):
    home = client.get("/")
    assert home.status_code == 200 and 'id="q"' in home.text and "start from a photo" in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    page = client.get("/", params={"q": "dog beach", "k": 20})
    assert page.status_code == 200
    assert page.text.count('data-column="calibrated"') == 1 and page.text.count('data-column="none"') == 1
    assert 'class="badge b-text"' in page.text and 'class="badge b-image"' in page.text
    assert "/api/thumbnail/" in page.text and "More like this" in page.text and "share of each modality" in page.text
    like = client.get("/", params={"like": "i1", "view": "plain"})  # the old name of none, still read
    assert like.status_code == 200 and "more like" in like.text and 'data-view="none"' in like.text
    upload = client.post("/", files={"image": ("mine.png", png_bytes(5), "image/png")}, data={"q": "dog", "k": "10"})
    assert upload.status_code == 200 and "data:image/jpeg;base64," in upload.text and "image+text query" in upload.text
    empty_file = client.post("/", files={"image": ("", b"", "application/octet-stream")}, data={"q": "dog"})
    assert empty_file.status_code == 200 and "text query" in empty_file.text


def test_page_shows_metadata_moves_and_takes_where(client):
    page = client.get("/", params={"q": "dog beach", "k": 14})
    assert page.status_code == 200
    assert '<dt>year</dt><dd title="2010">2010</dd>' in page.text and "<dt>source</dt>" in page.text
    calibrated = page.text.split('data-column="none"')[0]  # the calibrated column comes first
    assert 'class="moved up"' in calibrated or 'class="moved down"' in calibrated  # calibration moved something
    assert "plain CLIP ranked it #" in calibrated and 'class="moved' not in page.text.split('data-column="none"')[1]
    assert 'class="share-legend"' in page.text and 'id="where"' in page.text and "year (BIGINT)" in page.text
    only = client.get("/", params={"q": "dog beach", "k": 14, "where": "source = 'wiki' AND year > 2012"})
    assert only.status_code == 200 and 'value="source = &#39;wiki&#39; AND year &gt; 2012"' in only.text
    assert set(re.findall(r"<dt>source</dt><dd[^>]*>(\w+)</dd>", only.text)) == {"wiki"}
    api = client.get("/api/search", params={"q": "dog", "where": "colour = 'red'"})
    bad = client.get("/", params={"q": "dog", "where": "colour = 'red'"})
    assert api.status_code == bad.status_code == 422 and 'role="alert"' in bad.text
    shown = re.search(r'role="alert">(.*?)</div>', bad.text, re.S).group(1)
    assert html.unescape(shown) == api.json()["detail"]  # the API's 422 detail, as the page shows it


def test_page_errors_are_pages(client):
    bad = client.get("/", params={"q": "dog", "k": "lots"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text and "k must be" in bad.text
    assert client.get("/", params={"q": "dog", "modality": "pictures"}).status_code == 422
    assert client.get("/", params={"like": "nope"}).status_code == 404
    refused = client.post("/", files={"image": ("a.png", b"not an image", "image/png")})
    assert refused.status_code == 415 and "not an image" in refused.text


def test_document_text_is_escaped_on_the_page(client):
    page = client.get("/", params={"q": f"{XSS} dog beach", "k": 14})
    assert page.status_code == 200 and 'data-id="xss"' in page.text
    assert XSS not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    api = client.get("/api/search", params={"q": "dog", "k": 14}).json()
    assert any(h.get("text") == f"{XSS} dog beach" for h in api["hits"])  # JSON carries the text as it is


def test_cases_html_escapes_document_text():
    from mixsearch.bench.report import case_study_html

    hit = {"rank": 1, "id": "d<1>", "score": 0.5, "modality": "text", "text": XSS, "relevance": 1}
    case = {"dataset": "<ds>", "model": "m", "label": "<b>x</b>", "queries": []}
    case["queries"].append({"id": "q<1>", "text": XSS, "relevant": ["d<1>"], "plain": [hit], "calibrated": [hit]})
    result = {
        "config": {"command": XSS},
        "runs": [{"models": {"m": {"calibration": {"source": XSS}}}, "cases": [case]}],
    }
    html = case_study_html(result)
    assert XSS not in html and "<b>x</b>" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4


# -- reload ---------------------------------------------------------------------------------------


def test_reload_after_recalibration(tiny_clip, index_folder, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(index_folder, folder)
    app = create_app([folder])
    with TestClient(app) as c:
        before = c.get("/api/search", params={"q": "dog", "k": 3}).json()
        old = app.state.registry.get()
        assert c.post("/reload").json() == {"indexes": {"index": "unchanged"}}
        ms.open_index(folder).recalibrate("none")
        assert c.post("/reload").json() == {"indexes": {"index": "reloaded"}}
        after = c.get("/api/search", params={"q": "dog", "k": 3}).json()
        assert before["calibration"]["method"] == "mean" and after["calibration"]["method"] == "none"
        assert c.get("/info").json()["indexes"]["index"]["views"] == {"calibrated": "none"}
        assert old.index.search("dog", k=3)  # a request still holding the old state finishes on it
        assert c.post("/reload", params={"force": True}).json() == {"indexes": {"index": "reloaded"}}


def test_reload_after_a_rebuild(tiny_clip, index_folder, tmp_path):
    import json

    folder = tmp_path / "index"
    shutil.copytree(index_folder, folder)
    with TestClient(create_app([folder])) as c:
        assert c.get("/health").json()["indexes"]["index"]["documents"] == 14
        corpus = tmp_path / "small.jsonl"
        corpus.write_text(
            "".join(json.dumps({"id": f"n{i}", "text": f"note {i} about a dog"}) + "\n" for i in range(3))
        )
        ms.build_index(corpus, folder, str(tiny_clip), calibration="none", cache_dir=tmp_path / "cache", progress=False)
        assert c.post("/reload").json() == {"indexes": {"index": "reloaded"}}
        assert c.get("/health").json()["indexes"]["index"]["documents"] == 3
        assert {h["id"] for h in c.get("/api/search", params={"q": "dog"}).json()["hits"]} == {"n0", "n1", "n2"}
        assert c.get("/api/documents/m1").status_code == 404


def test_reload_error_keeps_serving(tiny_clip, index_folder, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(index_folder, folder)
    with TestClient(create_app([folder])) as c:
        (folder / "manifest.json").write_text("{broken")
        status = c.post("/reload").json()["indexes"]["index"]
        assert status.startswith("error:")
        assert c.get("/health").json()["status"] == "degraded"
        assert c.get("/api/search", params={"q": "dog"}).status_code == 200


def test_watcher_picks_up_a_rebuilt_index(tiny_clip, index_folder, tmp_path):
    import time

    folder = tmp_path / "index"
    shutil.copytree(index_folder, folder)
    with TestClient(create_app([folder], watch_interval=0.2)) as c:
        assert c.get("/info").json()["indexes"]["index"]["calibration"]["method"] == "mean"
        ms.open_index(folder).recalibrate("none")
        deadline = time.monotonic() + 20
        while c.get("/info").json()["indexes"]["index"]["calibration"]["method"] != "none":
            assert time.monotonic() < deadline, "the change on disk was not picked up"
            time.sleep(0.1)


def test_several_indexes_share_one_model(tiny_clip, index_folder, tmp_path):
    other = tmp_path / "other" / "index"
    shutil.copytree(index_folder, other)
    app = create_app([index_folder, other])
    registry = app.state.registry
    assert list(registry.served) == ["index", "index-2"]
    assert registry.get("index").index.encoder is registry.get("index-2").index.encoder
    with TestClient(app) as c:
        assert c.get("/api/search", params={"q": "dog", "index": "index-2"}).json()["index"] == "index-2"
        page = c.get("/", params={"q": "dog", "index": "index-2"})
        assert page.status_code == 200 and '<option value="index-2" selected>' in page.text


def test_no_500_for_odd_requests(client):
    odd = [
        ("GET", "/api/search?q=%00%ff"),
        ("GET", "/api/search?q=dog&k="),
        ("GET", "/api/search?q=dog&modality="),
        ("GET", "/api/thumbnail/i1?size=0"),
        ("GET", "/api/thumbnail/i1?size=abc"),
        ("GET", "/api/media/i1?modality=../../x"),
        ("POST", "/api/search"),
        ("POST", "/reload?force=maybe"),
        ("GET", "/?q=%ED%A0%80"),
        ("GET", "/?k=0&q=dog"),
        ("GET", "/?index=nope"),
    ]
    for method, path in odd:
        response = client.request(method, path)
        assert 400 <= response.status_code < 500 or response.status_code == 200, (path, response.status_code)
    assert os.environ.get("MIXSEARCH_URL") is None or True


def test_listening_socket_is_tcp_so_responses_are_not_delayed():
    # asyncio sets TCP_NODELAY only on sockets created as IPPROTO_TCP; without it each response
    # waited ~40 ms (Nagle's algorithm against the client's delayed ACK)
    import socket

    from mixsearch.server.run import _listen

    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_loopback_server_refuses_other_host_names(index_folder):
    # what `mixsearch serve` does on 127.0.0.1: a DNS-rebinding page's Host header is refused
    from mixsearch.server.run import LOOPBACK_NAMES

    with TestClient(create_app([index_folder], allowed_hosts=[*LOOPBACK_NAMES, "127.0.0.1"])) as c:
        assert c.get("/health", headers={"Host": "127.0.0.1:8000"}).status_code == 200
        assert c.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/health", headers={"Host": "evil.example:8000"}).status_code == 400


def test_media_safety_does_not_depend_on_the_servers_working_directory(tiny_clip, tmp_path, monkeypatch):
    """A symlink repointed out of the corpus is refused wherever the server runs; a symlink to a
    file without a suffix (git-annex's objects) is served with the recorded name's type."""
    pics, secret = tmp_path / "pics", tmp_path / "secret"
    pics.mkdir(), secret.mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(pics / "a.png")
    (secret / "key.png").write_bytes(b"TOP SECRET\n")
    objects = tmp_path / "pics" / ".annex"
    objects.mkdir()
    Image.new("RGB", (40, 40), (10, 200, 10)).save(objects / "SHA256-s1--abcdef", format="PNG")
    os.symlink(pics / "a.png", pics / "c.png")
    os.symlink(objects / "SHA256-s1--abcdef", pics / "photo.png")
    monkeypatch.chdir(pics)
    ms.build_index(".", tmp_path / "pidx", str(tiny_clip), calibration="none", progress=False)
    os.remove(pics / "c.png")
    os.symlink(secret / "key.png", pics / "c.png")  # repointed after the build
    for cwd in ("/", str(tmp_path), str(pics)):
        monkeypatch.chdir(cwd)
        with TestClient(create_app([tmp_path / "pidx"])) as c:
            assert c.get("/api/media/c.png").status_code == 404, cwd
            annexed = c.get("/api/media/photo.png")
            assert annexed.status_code == 200 and annexed.headers["content-type"] == "image/png", cwd
            assert c.get("/api/media/a.png").status_code == 200


def test_serve_refuses_a_port_out_of_range():
    from typer.testing import CliRunner

    from mixsearch.cli import app as cli

    result = CliRunner().invoke(cli, ["serve", "nowhere", "--port", "99999"])
    assert result.exit_code == 2 and "Traceback" not in result.output


# -- structure: routers, response models, the client on the same models ----------------------------

JSON_ROUTES = {
    ("get", "/health"): "HealthResponse",
    ("get", "/info"): "InfoResponse",
    ("post", "/reload"): "ReloadResponse",
    ("get", "/api/search"): "SearchResponse",
    ("post", "/api/search"): "SearchResponse",
    ("post", "/api/search/batch"): "BatchResponse",
    ("get", "/api/documents/{doc_id}"): "DocumentResponse",
}


def test_openapi_declares_a_response_schema_for_each_json_route(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for (method, path), model in JSON_ROUTES.items():
        responses = spec["paths"][path][method]["responses"]
        ref = responses["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}", (method, path)
        assert schemas[model]["properties"], model
        errors = [status for status in ("401", "404", "422") if status in responses]
        assert "401" in errors and (path in ("/health", "/info") or "422" in errors), (method, path)
        for status in errors:
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert set(schemas["HitModel"]["properties"]) >= {"rank", "id", "score", "modality", "thumbnail_url"}
    assert "min_relevance" in schemas["BatchRequest"]["properties"]
    assert spec["paths"]["/api/documents/{doc_id}"]["get"]["responses"]["404"]["content"]["application/json"]


def test_the_wire_format_is_unchanged(client):
    # the page's JavaScript and older clients read these names; empty fields stay out, not null
    answer = client.get("/api/search", params={"q": "dog", "k": 14}).json()
    assert set(answer) == {"index", "model", "calibration", "query", "k", "modality", "where", "took_ms", "hits"}
    assert answer["query"] == {"text": "dog", "kind": "text"} and answer["where"] is None
    assert all(None not in h.values() for h in answer["hits"])
    assert {"image_url", "thumbnail_url"} <= set(next(h for h in answer["hits"] if h.get("image")))
    batch = client.post("/api/search/batch", json={"queries": ["dog"]}).json()
    assert set(batch) == {"index", "model", "calibration", "k", "modality", "where", "took_ms", "results"}
    assert set(client.get("/health").json()["indexes"]["index"]) == {"documents", "generation"}
    assert set(client.get("/api/documents/t0").json()) == {"index", "row", "id", "modality", "text"}


def test_routes_are_defined_in_routers(client):
    import inspect

    from fastapi.routing import APIRoute

    from mixsearch.server import app as app_module
    from mixsearch.server.routes import ROUTERS

    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) == 11  # 7 JSON, media, thumbnail, the page's GET and POST
    for route in routes:
        assert route.endpoint.__module__.startswith("mixsearch.server.routes."), route.path
        assert "<locals>" not in route.endpoint.__qualname__, route.path  # no closures over create_app's locals
    documented = {(r.path.replace(":path", ""), m.lower()) for r in routes if r.include_in_schema for m in r.methods}
    served = {(path, m) for path, ops in client.get("/openapi.json").json()["paths"].items() for m in ops}
    assert served == documented  # every API route the app has comes from a router
    assert client.get("/").status_code == 200  # the page's router is included too
    source = inspect.getsource(app_module.create_app)
    assert "@app." not in source and len(source.splitlines()) < 60


def _as_served(hit: ms.Hit) -> ms.Hit:
    """A hit as a client sees it: media as file names (the server's paths stay on the server), no
    metadata for a document without any (the JSON leaves it out, as ``Hit.to_dict`` does)."""
    from dataclasses import replace
    from pathlib import Path

    media = {part: Path(getattr(hit, part)).name for part in ("image", "audio", "video") if getattr(hit, part)}
    return replace(hit, **media, metadata=hit.metadata or None)


def test_client_returns_the_hits_of_index_search(app, local):
    from server_helpers import ThreadServer

    from mixsearch.client import Client

    index, plain = local
    with ThreadServer(app) as server:
        client = Client(server.url)
        hits = client.search("dog on the beach", k=14)
        assert all(isinstance(h, ms.Hit) for h in hits) and any(h.metadata for h in hits)
        assert hits == [_as_served(h) for h in index.search("dog on the beach", k=14)]
        assert client.search("red ball", k=5, calibration="plain", modality="image") == [
            _as_served(h) for h in plain.search("red ball", k=5, modality="image")
        ]
        batch = client.search_batch(["dog on the beach", {"like": "m1"}], k=4)
        assert batch[0] == [_as_served(h) for h in index.search("dog on the beach", k=4)]
        assert batch[1] == client.search(like="m1", k=4)
        assert client.search_response("dog", k=2).calibration.method == "mean"
        assert client.info().indexes["index"].views == {"calibrated": "mean", "none": "none"}
        assert client.document("m1").image == "m1.png"
        with pytest.raises(ms.UsageError, match="list of queries"):
            client.search_batch("a dog")  # type: ignore[arg-type]


def test_batch_min_relevance(index_folder, tmp_path):
    from mixsearch.calibration.relevance import POOLED, RelevanceMap

    folder = tmp_path / "index"
    shutil.copytree(index_folder, folder)
    texts = ["dog on the beach", "red ball", "snow"]
    with TestClient(create_app([folder])) as c:
        refused = c.post("/api/search/batch", json={"queries": texts, "min_relevance": 0.5})
        assert refused.status_code == 422 and "no relevance map" in refused.json()["detail"]
        index = ms.open_index(folder)
        relevance = RelevanceMap("platt")  # relevance = sigmoid(30 * score): a cut at 0.5 keeps scores >= 0
        relevance.params_ = {POOLED: {"a": np.array([30.0]), "b": np.array([0.0])}}
        index.recalibrate(index.calibrator.with_relevance(relevance))
        assert c.post("/reload").json() == {"indexes": {"index": "reloaded"}}
        full = c.post("/api/search/batch", json={"queries": texts, "k": 14}).json()
        cut = c.post("/api/search/batch", json={"queries": texts, "k": 14, "min_relevance": 0.5}).json()
        assert cut["min_relevance"] == 0.5 and "min_relevance" not in full
        for before, after, text in zip(full["results"], cut["results"], texts):
            kept = [h for h in before["hits"] if h["relevance"] >= 0.5]
            assert [h["id"] for h in after["hits"]] == [h["id"] for h in kept]
            assert [h["rank"] for h in after["hits"]] == list(range(1, len(kept) + 1))
            single = c.get("/api/search", params={"q": text, "k": 14, "min_relevance": 0.5}).json()
            assert [h["id"] for h in after["hits"]] == [h["id"] for h in single["hits"]]  # batched: same cut
        assert sum(len(r["hits"]) for r in cut["results"]) < sum(len(r["hits"]) for r in full["results"])
        assert c.post("/api/search/batch", json={"queries": texts, "min_relevance": 3}).status_code == 422


# -- cross-site requests, offline docs, no server paths (issue 18) -------------------------------

EVIL = "https://evil.example"
#: What Chromium sends with a request another site's page makes (a fetch, an <img>, a form).
CROSS_SITE = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"}


def test_cross_site_requests_are_refused(client, app):
    search = {"q": "dog", "where": "year >= 2010"}
    for headers in (
        CROSS_SITE,
        {"Origin": EVIL},  # a browser without Sec-Fetch-*
        {"Sec-Fetch-Site": "cross-site"},  # a GET without Origin (an <img>, a no-cors fetch)
        {"Sec-Fetch-Site": "same-site"},  # another port of this machine: another origin
        {"Origin": "null"},  # a sandboxed frame, a file: page
        {"Origin": "http://testserver:8080", "Sec-Fetch-Site": "same-site"},
    ):
        refused = client.get("/api/search", params=search, headers=headers)
        assert refused.status_code == 403, headers
        assert "cross-site request refused" in refused.json()["detail"]
    reloads = app.state.registry.reloads
    assert client.post("/reload", params={"force": True}, headers=CROSS_SITE).status_code == 403
    form = {**CROSS_SITE, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}  # a form's POST
    assert client.post("/reload", data={"force": "true"}, headers=form).status_code == 403
    assert client.post("/", data={"q": "dog"}, headers=form).status_code == 403
    assert client.post("/api/search/batch", json={"queries": ["dog"]}, headers=CROSS_SITE).status_code == 403
    assert client.get("/api/thumbnail/i0", headers=CROSS_SITE).status_code == 403
    assert client.get("/", params={"q": "dog"}, headers={**form, "Sec-Fetch-Dest": "iframe"}).status_code == 403
    assert app.state.registry.reloads == reloads  # nothing was reloaded


def test_same_origin_typed_and_non_browser_requests_pass(client):
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    for headers in ({}, own, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}):
        assert client.get("/api/search", params={"q": "dog"}, headers=headers).status_code == 200, headers
    assert client.post("/api/search/batch", json={"queries": ["dog"]}, headers=own).status_code == 200
    own_form = {"Origin": "null", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}
    assert client.post("/", data={"q": "dog"}, headers=own_form).status_code == 200  # the page's own form
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get("/", params={"q": "dog"}, headers=link).status_code == 200  # a link from elsewhere
    assert client.get("/docs", headers=link).status_code == 200
    assert client.get("/static/style.css", headers=CROSS_SITE).status_code == 200  # assets do nothing


def test_reload_is_no_form_target(client):
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"):
        refused = client.post("/reload", content=b"force=true", headers={"Content-Type": content_type})
        assert refused.status_code == 415 and "JSON" in refused.json()["detail"], content_type
    assert client.post("/reload").status_code == 200  # curl -X POST, the Python client
    assert client.post("/reload", json={}).status_code == 200


def test_allowed_origin(index_folder):
    app = create_app([index_folder], allowed_origins=["https://app.example/"])
    with TestClient(app) as c:
        theirs = {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
        answer = c.get("/api/search", params={"q": "dog"}, headers=theirs)
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example"
        preflight = c.options(
            "/reload",
            headers={
                **theirs,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert c.get("/api/search", params={"q": "dog"}, headers=CROSS_SITE).status_code == 403
        assert "access-control-allow-origin" not in c.get("/health", headers={"Origin": EVIL}).headers


def test_docs_are_served_from_the_package(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "/docs/static/swagger-ui-bundle.js" in html and "/docs/static/swagger-ui.css" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy and "default-src 'none'" in policy
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/docs/static/{asset}").status_code == 200, asset
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and "/docs/static/redoc.standalone.js" in redoc.text
    assert "https://" not in redoc.text and "fonts.googleapis" not in redoc.text


def test_no_server_path_in_any_answer(index_folder, tiny_clip, tmp_path):
    secret = tmp_path / "srv-secret" / "calibrations"
    folder = tmp_path / "srv-secret" / "index"
    shutil.copytree(index_folder, folder)
    index = ms.open_index(folder)
    means = ms.save_calibration(
        index.calibrator,
        secret / "means.safetensors",
        provenance={"fitted_on": {"text": str(secret / "texts.jsonl")}, "description": f"from {secret}/x.jsonl"},
    )
    index.recalibrate(str(means.resolve()))
    assert str(secret) in json.dumps(ms.open_index(folder).manifest.to_dict())  # the manifest has the path
    with TestClient(create_app([folder])) as c:
        answers = {
            "info": c.get("/info").text,
            "health": c.get("/health").text,
            "search": c.get("/api/search", params={"q": "dog"}).text,
            "plain": c.get("/api/search", params={"q": "dog", "calibration": "plain"}).text,
            "upload": c.post("/api/search", files={"image": ("q.png", png_bytes(3), "image/png")}).text,
            "batch": c.post("/api/search/batch", json={"queries": ["dog", {"like": "i0"}]}).text,
            "document": c.get("/api/documents/m1").text,
            "page": c.get("/").text,
            "results page": c.get("/", params={"q": "dog"}).text,
            "reload": c.post("/reload", params={"force": True}).text,
        }
        calibration = c.get("/info").json()["indexes"]["index"]["calibration"]
    for name, text in answers.items():
        for path in (str(tmp_path), str(tiny_clip.parent), str(index_folder.parent)):
            assert path not in text, f"{name} shows a server path: {path}"
    assert calibration["source"] == "means.safetensors"
    assert calibration["provenance"]["fitted_on"] == {"text": "texts.jsonl"}
    assert calibration["provenance"]["description"] == "from x.jsonl"


def test_errors_name_files_without_their_folders(tmp_path):
    from mixsearch.server.redact import redact_paths, redact_text

    assert redact_text(f"cannot read {tmp_path}/index/manifest.json: bad") == "cannot read manifest.json: bad"
    kept = ["corpus", "none", "openai/clip-vit-base-patch32", "http://host/a/b.png", "a / b", "year >= 2020"]
    assert redact_paths(kept) == kept
    assert redact_paths({"a": ["~/cal/m.st", "../x/y.npz", "C:\\Users\\me\\m.st"]}) == {"a": ["m.st", "y.npz", "m.st"]}
