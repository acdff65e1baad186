"""Mistakes fail before the model loads, and a huge text costs what its head costs.

0.3.0 took 14.6 s to say ``index missing.jsonl`` was missing (it loaded torch and the model first)
and 2.8 s to refuse ``search -k 0``; a 10 MB text took 79 s to tokenise for the 24 tokens the model
reads. The times are in benchmarks/bench_fail_fast.py; here we check the causes: the commands
never import torch, and the tokenizer never sees more than the text's head.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mixsearch import build_index, load_encoder

ROOT = Path(__file__).resolve().parents[1]

#: Runs each argv through the CLI in this one process; prints, for each, the exit code, what it
#: said on stderr and which heavy libraries had been imported by then.
PROBE = r"""
import contextlib, io, json, sys
from mixsearch.cli import app
HEAVY = ("torch", "transformers", "sentence_transformers")
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            app(args=argv, prog_name="mixsearch")
            code = 0
        except SystemExit as stop:
            code = stop.code
    out.append({"code": code, "said": err.getvalue(), "heavy": [m for m in HEAVY if m in sys.modules]})
print(json.dumps(out))
"""


def probe(commands: list[list]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    argv = json.dumps([[str(a) for a in c] for c in commands])
    done = subprocess.run([sys.executable, "-c", PROBE, argv], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def small_index(tiny_clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fail-fast")
    corpus = folder / "corpus.jsonl"
    records = [{"id": f"d{i}", "text": f"a dog number {i}", "year": 2020 + i} for i in range(4)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    build_index(corpus, folder / "idx", load_encoder(tiny_clip))
    return folder


def test_mistakes_fail_before_torch_is_imported(small_index):
    idx, corpus, nowhere = small_index / "idx", small_index / "corpus.jsonl", small_index / "nowhere"
    cases = [
        (["--help"], 0, ""),
        (["index", "missing.jsonl", "-o", nowhere / "a"], 1, "missing.jsonl: no such corpus file or folder"),
        (["index", corpus, "-o", corpus], 1, "would replace the corpus"),
        (["index", corpus, "-o", nowhere / "b", "--calibration", nowhere / "c.safetensors"], 1, "no such calibration"),
        (["index", corpus, "-o", nowhere / "d", "--index", "hnsw", "--index-option", "M=0"], 2, "hnsw index option M"),
        (["index", corpus, "-o", nowhere / "e", "--backend", "milvus"], 2, "--backend milvus needs --uri"),
        (["search", idx, "a dog", "-k", "0"], 2, "k must be a positive whole number"),
        (["search", idx, "a dog", "--where", "year >"], 2, "is not a valid SQL condition"),
        (["search", idx, "a dog", "--where", "colour = 'red'"], 2, "unknown field"),
        (["search", idx, "a dog", "--modality", "smell"], 2, "smell"),
        (["search", idx, "a dog", "--min-relevance", "2"], 2, "min_relevance"),
        (["search", nowhere, "a dog"], 1, str(nowhere)),
        (["add", idx, nowhere / "more.jsonl"], 1, "no such corpus file or folder"),
        (["calibrate", "--texts", nowhere / "t.txt", "-o", nowhere / "cal.safetensors"], 1, "no such file or folder"),
        (["calibrate", "-o", nowhere / "cal.safetensors"], 1, "nothing to fit"),
    ]
    results = probe([argv for argv, _, _ in cases])
    for (argv, code, said), got in zip(cases, results):
        shown = " ".join(str(a) for a in argv)
        assert got["code"] == code, f"mixsearch {shown}: exit {got['code']}, said {got['said']!r}"
        assert said in got["said"], f"mixsearch {shown}: said {got['said']!r}"
        assert not got["heavy"], f"mixsearch {shown} imported {got['heavy']} before failing"
    assert not (small_index / "nowhere").exists()  # and wrote nothing


class Spy:
    """A tokenizer that records the longest text it was given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, texts, *args, **kwargs):
        self.longest = max([self.longest, *map(len, [texts] if isinstance(texts, str) else texts)])
        return self.tokenizer(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_a_huge_text_is_cut_before_tokenising_and_still_counts_as_truncated(tiny_clip):
    encoder = load_encoder(tiny_clip, runtime="torch")
    rng = np.random.default_rng(0)
    words = "dog cat beach ball red blue runs jumps grass snow child water".split()
    huge = " ".join(rng.choice(words, 200_000))  # about 1 MB; the model reads 24 tokens
    short, no_spaces = "a dog on the beach", "狗" * 100_000  # CJK: no whitespace to cut at
    reference, ref_flags = encoder.encode_with_flags([huge[:2000], short, no_spaces[:2000]])
    encoder.tokenizer = Spy(encoder.tokenizer)
    vectors, flags = encoder.encode_with_flags([huge, short, no_spaces])
    assert encoder.tokenizer.longest <= 2000 + 8 * 4 * encoder.max_length, encoder.tokenizer.longest
    assert flags.tolist() == [True, False, True] == ref_flags.tolist()
    np.testing.assert_allclose(vectors, reference, atol=1e-5)  # the same tokens reach the model
