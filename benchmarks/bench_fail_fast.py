"""How long a mistake takes to be reported, and what a huge text costs to index (issue 18).

    python benchmarks/bench_fail_fast.py [--src SRC] [--mb 10] [--repeat 3] [--skip-big]

Each case is one ``mixsearch`` process, timed from start to exit (torch's import and the model
load are what a user waits for), with the bundled default model:

1. ``mixsearch index missing.jsonl -o OUT``: a corpus that does not exist;
2. ``mixsearch search INDEX "a dog" -k 0``: an impossible k;
3. ``mixsearch search INDEX "a dog" --where "year >"``: a condition that does not parse;
4. ``mixsearch index big.jsonl -o OUT``: one text document of ``--mb`` MB (random words) and two
   short ones, an empty embedding cache each run.

``--src`` runs another checkout's ``src`` (e.g. a worktree of the 0.3.0 commit: the "before"
column). Prints one markdown row per case (median of ``--repeat`` runs; the big index once) and the
machine with its load average; benchmarks/results/fail_fast.md holds the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORDS = "a dog cat runs on the beach red ball child water snow grass jumps man woman street bike".split()


def mixsearch(src: Path, work: Path, *args: object) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "MIXSEARCH_CACHE_DIR": tempfile.mkdtemp(dir=work)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mixsearch", *map(str, args)], env=env, capture_output=True, text=True, cwd=work
    )
    return time.perf_counter() - start, done.returncode, done.stderr.strip().splitlines()[-1:]


def write_corpus(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=HERE.parent / "src", help="the mixsearch source to time")
    parser.add_argument("--mb", type=float, default=10.0, help="size of the huge text document")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true", help="leave out the huge text (the slow case before)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small = write_corpus(
            work / "small.jsonl", [{"id": f"d{i}", "text": f"a dog number {i}", "year": 2020 + i} for i in range(4)]
        )
        seconds, code, said = mixsearch(args.src, work, "index", small, "-o", work / "idx")
        assert code == 0, said
        cases = {
            "index missing.jsonl": ("index", "missing.jsonl", "-o", work / "out-missing"),
            "search -k 0": ("search", work / "idx", "a dog", "-k", "0"),
            "search --where 'year >'": ("search", work / "idx", "a dog", "--where", "year >"),
        }
        rows = []
        for name, argv in cases.items():
            runs = [mixsearch(args.src, work, *argv) for _ in range(args.repeat)]
            rows.append((name, statistics.median(r[0] for r in runs), runs[0][1], runs[0][2]))
        if not args.skip_big:
            rng = np.random.default_rng(0)
            n_words = int(args.mb * 1e6 / 5)  # about 5 characters a word with its space
            huge = " ".join(rng.choice(WORDS, n_words))
            big = write_corpus(
                work / "big.jsonl",
                [{"id": "huge", "text": huge}, {"id": "a", "text": "a dog"}, {"id": "b", "text": "a red ball"}],
            )
            seconds, code, said = mixsearch(args.src, work, "index", big, "-o", work / "idx-big")
            rows.append((f"index a {len(huge) / 1e6:.1f} MB text", seconds, code, said))
    print(f"source: {args.src}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| case | seconds | exit | last line on stderr |")
    print("|---|---|---|---|")
    for name, seconds, code, said in rows:
        print(f"| {name} | {seconds:.2f} | {code} | {' '.join(said)[:100]} |")


if __name__ == "__main__":
    main()
