"""The command line, end to end: calibrate, index a mixed corpus, search it, recalibrate."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mixsearch.cli import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_calibrate_index_search(tiny_clip, mixed_corpus, tmp_path):
    folder = mixed_corpus.parent
    (folder / "q.txt").write_text("a dog\nsnow\n")
    code, out = run(
        "calibrate",
        "--model",
        tiny_clip,
        "--queries",
        folder / "q.txt",
        "--texts",
        mixed_corpus,
        "--images",
        folder / "img",
        "--out",
        tmp_path / "cal.safetensors",
    )
    assert code == 0, out
    assert "items per mean: query: 2, text: 10, image: 8" in out

    code, out = run(
        "index",
        mixed_corpus,
        "--model",
        tiny_clip,
        "--calibration",
        tmp_path / "cal.safetensors",
        "--alpha",
        "0.4",
        "--out",
        tmp_path / "idx",
    )
    assert code == 0, out
    assert "indexed 13 documents" in out and "4 documents skipped" in out and "corrupt.jpg" in out
    assert "1 texts were longer than the model's context" in out

    code, out = run("search", tmp_path / "idx", "dog on the beach", "-k", "4", "--json")
    assert code == 0, out
    hits = [json.loads(line) for line in out.strip().splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert all({"id", "score", "modality"} <= set(h) for h in hits)

    code, out = run("search", tmp_path / "idx", folder / "img" / "m3.png", "-k", "1", "--modality", "multimodal")
    assert code == 0 and " m3 " in out
    code, out = run("search", tmp_path / "idx", "--image", folder / "img" / "i1.png", "-k", "1", "--json")
    assert code == 0 and json.loads(out)["id"] == "i1"

    code, out = run("recalibrate", tmp_path / "idx", "--calibration", "none", "--alpha", "0.5")
    assert code == 0 and "calibration none from none, alpha 0.5" in out
    code, out = run("info", tmp_path / "idx", "--json")
    assert json.loads(out)["calibration"]["method"] == "none"


def test_failed_runs_exit_1_and_usage_errors_exit_2(tiny_clip, tiny_clip_other, mixed_corpus, tmp_path):
    """Expected failures print 'error: ...' (no traceback) with the documented exit code."""
    failed = [
        (("search", tmp_path / "nowhere", "x"), "not a mixsearch index"),
        (("index", mixed_corpus, "--model", tmp_path / "no-model", "--out", tmp_path / "i"), "cannot load model"),
        (
            ("index", mixed_corpus, "--model", tiny_clip, "--device", "cuda:7", "--out", tmp_path / "i"),
            "CUDA is not available",
        ),
    ]
    run("calibrate", "--model", tiny_clip, "--texts", mixed_corpus, "--out", tmp_path / "cal.safetensors")
    failed.append(
        (
            (
                "index",
                mixed_corpus,
                "--model",
                tiny_clip_other,
                "--calibration",
                tmp_path / "cal.safetensors",
                "--out",
                tmp_path / "i",
            ),
            "cannot be applied",
        )
    )
    for args, message in failed:
        code, out = run(*args)
        assert (code, message in out, "Traceback" in out) == (1, True, False), (args, out)

    code, out = run("index", mixed_corpus, "--model", tiny_clip, "--calibration", "none", "--out", tmp_path / "idx")
    assert code == 0, out
    usage = [
        (
            ("index", mixed_corpus, "--model", tiny_clip, "--alpha", "1.5", "--out", tmp_path / "j"),
            "alpha must be in [0, 1]",
        ),
        (
            ("search", tmp_path / "idx", "photos/no-such.jpg"),
            "no such image file (to search for this as text, use --text)",
        ),
        (("search", tmp_path / "idx", "dog", "--image", tmp_path / "nope.png"), "no such image file"),
        (("search", tmp_path / "idx", "dog", "-k", "0"), "k must be a positive whole number"),
        (("search", tmp_path / "idx", "dog", "--modality", "pictures"), "unknown modality pictures"),
        (("search", tmp_path / "idx"), "give a query"),
        (("bench", mixed_corpus, "--out", tmp_path / "b", "--settings", "4"), "--settings: expected 1, 2 and/or 3"),
        (("recalibrate", tmp_path / "idx", "--alpha", "-0.1"), "alpha must be in [0, 1]"),
    ]
    for args, message in usage:
        code, out = run(*args)
        assert (code, message in out, "Traceback" in out) == (2, True, False), (args, out)
    assert not (tmp_path / "j").exists()  # refused before any work
    # a text that looks like a file name is searched as text with --text
    code, out = run("search", tmp_path / "idx", "--text", "photos/no-such.jpg", "-k", "2")
    assert code == 0 and len(out.strip().splitlines()) == 2, out


@pytest.mark.slow
def test_console_script_runs_as_a_process(tiny_clip, mixed_corpus, tmp_path):
    env = dict(os.environ)
    cmd = [
        sys.executable,
        "-m",
        "mixsearch",
        "index",
        str(mixed_corpus),
        "--model",
        str(tiny_clip),
        "--calibration",
        "none",
        "--out",
        str(tmp_path / "idx"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "mixsearch", "search", str(tmp_path / "idx"), "red ball"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 10


def test_search_and_info_speak_for_people(tiny_clip, tmp_path, monkeypatch):
    """search: media paths relative to the current folder and each hit's metadata, in text and
    JSON; --modality and --calibration take the old names; info: a readable summary with the
    filterable fields and their SQL types (--json for machines)."""
    from conftest import write_image

    (tmp_path / "img").mkdir()
    records = [
        {"id": "t0", "text": "a red ball on grass", "year": 2021, "source": "wiki"},
        {"id": "i0", "image": "img/i0.png", "year": 2019, "source": "news agency"},
        {"id": "m0", "text": "a dog", "image": str(write_image(tmp_path / "img" / "m0.png", 3)), "year": 2020},
    ]
    write_image(tmp_path / "img" / "i0.png", 1)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out = run("index", tmp_path / "corpus.jsonl", "--model", tiny_clip, "--out", tmp_path / "idx")
    assert code == 0, out
    monkeypatch.chdir(tmp_path)

    code, out = run("search", "idx", "a red ball", "-k", "3")
    assert code == 0, out
    assert "[img/i0.png]" in out and "[img/m0.png]" in out and str(tmp_path) not in out
    assert "(year=2021, source=wiki)" in out and 'source="news agency"' in out
    code, out = run("search", "idx", "a red ball", "-k", "3", "--json")
    by_id = {h["id"]: h for h in map(json.loads, out.strip().splitlines())}
    assert by_id["i0"]["metadata"] == {"year": 2019, "source": "news agency"}

    for name in ("multimodal", "image+text", "IT", "I+T", "image_text"):
        code, out = run("search", "idx", "a red ball", "--modality", name, "--json")
        assert code == 0 and [json.loads(line)["modality"] for line in out.strip().splitlines()] == ["multimodal"]
    plain = [run("search", "idx", "a red ball", "--calibration", name, "--json") for name in ("none", "plain")]
    assert plain[0] == plain[1] and plain[0][0] == 0
    assert "'calibrated' or 'none'" in run("search", "idx", "ball", "--calibration", "raw")[1]

    code, out = run("info", "idx")
    assert code == 0, out
    assert "documents    3: 1 text, 1 image, 1 multimodal" in out
    assert "fields       modality VARCHAR  year BIGINT  source VARCHAR" in out
    assert json.loads(run("info", "idx", "--json")[1])["fields"] == {
        "modality": "VARCHAR",
        "year": "BIGINT",
        "source": "VARCHAR",
    }
