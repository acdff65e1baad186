"""Make the demo's bundled sample: N seeded-random Flickr8k *dev* photos with their captions.

    python scripts/make_demo_sample.py --flickr8k ../shared/data/flickr8k --n 150

Writes src/mixsearch/data/flickr8k_sample/ (images/, captions.jsonl, LICENSE.md). Dev photos only:
the shipped model never trained on them.
"""

import argparse
import json
import random
import shutil
from pathlib import Path

LICENCE = """# Flickr8k sample — licence note

{n} photos and their 5 captions each, sampled (seed {seed}) from the Flickr8k *dev* split as kept in
the shared data folder (photos resized to 224x224). Flickr8k is for **research use only**; the
photos remain the property of their Flickr owners.

Cite: M. Hodosh, P. Young and J. Hockenmaier (2013), "Framing Image Description as a Ranking Task:
Data, Models and Evaluation Metrics", Journal of Artificial Intelligence Research 47, 853-899.

Made by `scripts/make_demo_sample.py --n {n} --seed {seed}`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--flickr8k", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k"
    )
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "src" / "mixsearch" / "data" / "flickr8k_sample",
    )
    args = parser.parse_args()

    records = [json.loads(line) for line in (args.flickr8k / "dev.jsonl").read_text().splitlines() if line.strip()]
    sample = random.Random(args.seed).sample(records, args.n)
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "images").mkdir(parents=True)
    with (args.out / "captions.jsonl").open("w") as f:
        for record in sample:
            shutil.copy(args.flickr8k / record["image"], args.out / record["image"])
            f.write(json.dumps(record) + "\n")
    (args.out / "LICENSE.md").write_text(LICENCE.format(n=args.n, seed=args.seed))
    print(f"wrote {args.n} photos to {args.out}")


if __name__ == "__main__":
    main()
