"""The command line, end to end: calibrate, index a mixed corpus, search it, recalibrate."""

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from mixsearch.cli import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_calibrate_index_search(tiny_clip, mixed_corpus, tmp_path):
    folder = mixed_corpus.parent
    (folder / "q.txt").write_text("a dog\nsnow\n")
    code, out = run("calibrate", "--model", tiny_clip, "--queries", folder / "q.txt", "--texts", mixed_corpus,
                    "--images", folder / "img", "--out", tmp_path / "cal.safetensors")
    assert code == 0, out
    assert "items per mean: query: 2, text: 10, image: 8" in out

    code, out = run("index", mixed_corpus, "--model", tiny_clip, "--calibration", tmp_path / "cal.safetensors",
                    "--alpha", "0.4", "--out", tmp_path / "idx")
    assert code == 0, out
    assert "indexed 13 documents" in out and "2 documents skipped" in out and "corrupt.jpg" in out
    assert "1 texts were longer than the model's context" in out

    code, out = run("search", tmp_path / "idx", "dog on the beach", "-k", "4", "--json")
    assert code == 0, out
    hits = [json.loads(line) for line in out.strip().splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert all({"id", "score", "modality"} <= set(h) for h in hits)

    code, out = run("search", tmp_path / "idx", folder / "img" / "m3.png", "-k", "1", "--modality", "multimodal")
    assert code == 0 and " m3 " in out

    code, out = run("recalibrate", tmp_path / "idx", "--calibration", "none", "--alpha", "0.5")
    assert code == 0 and "calibration none from none, alpha 0.5" in out
    code, out = run("info", tmp_path / "idx")
    assert json.loads(out)["calibration"]["method"] == "none"


def test_user_errors_exit_2_with_a_message(tiny_clip, tiny_clip_other, mixed_corpus, tmp_path):
    code, out = run("search", tmp_path / "nowhere", "x")
    assert code == 2 and "not a mixsearch index" in out
    code, out = run("index", mixed_corpus, "--model", tmp_path / "no-model", "--out", tmp_path / "i")
    assert code == 2 and "cannot load model" in out
    run("calibrate", "--model", tiny_clip, "--texts", mixed_corpus, "--out", tmp_path / "cal.safetensors")
    code, out = run("index", mixed_corpus, "--model", tiny_clip_other, "--calibration", tmp_path / "cal.safetensors",
                    "--out", tmp_path / "i")
    assert code == 2 and "cannot be applied" in out


def test_console_script_runs_as_a_process(tiny_clip, mixed_corpus, tmp_path):
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "mixsearch", "index", str(mixed_corpus), "--model", str(tiny_clip),
           "--calibration", "none", "--out", str(tmp_path / "idx")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "mixsearch", "search", str(tmp_path / "idx"), "red ball"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 10
