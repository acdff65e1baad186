"""Issue 20's gap variants: train each on the trunk caches, then tabulate their logs.

Each variant trains mixclip-gap's recipe (python -m mixsearch.training.gap) for 5 epochs on the same
seeds and dev protocol; its log (options, every epoch's dev numbers, seconds, load average) is kept in
benchmarks/results/gap_variants/<name>.json. The commands, in order (caches in /tmp, ~12 min each on
the shared 2 cores; ``nice`` throughout)::

    G="python -m mixsearch.training.gap"; R=benchmarks/results/gap_variants; D=../shared/data/flickr8k
    $G cache --data $D --cache /tmp/gap-cache.pt
    $G cache --data $D --cache /tmp/gap-cache-top.pt --train-top
    $G cache --data $D --cache /tmp/gap-cache-random.pt --random-image 0 --text-from /tmp/gap-cache.pt
    $G train --cache /tmp/gap-cache.pt --epochs 5 --log $R/shipped_5_epochs.json
    $G train --cache /tmp/gap-cache.pt --epochs 5 --linear --log $R/linear_heads.json
    $G train --cache /tmp/gap-cache-top.pt --epochs 5 --log $R/train_top.json
    $G train --cache /tmp/gap-cache-random.pt --epochs 5 --log $R/random_image_trunk.json
    python benchmarks/gap_scratch.py cost --data $D                            # 224 px step time
    python benchmarks/gap_scratch.py compare --data $D --size 112 --epochs 3   # scratch vs pretrained tower

    python benchmarks/gap_variants.py      # prints the model card's rows from the logs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "results" / "gap_variants"


def row(name: str, log: dict) -> str:
    first, last = log["epochs"][0]["dev"], log["epochs"][-1]["dev"]
    t0, t1 = log["epochs"][0]["temperature"], log["epochs"][-1]["temperature"]
    cos = f"{last['cos_text_text']:.3f} / {last['cos_image_image']:.3f} / {last['cos_text_image_unrelated']:.3f}"
    return (
        f"| {name} | {t0} → {t1} | {len(log['epochs']) - 1} "
        f"| {first['centroid_distance']:.3f} → {last['centroid_distance']:.3f} | {cos} "
        f"| {last['cos_text_image_matched']:.3f} "
        f"| {last['t2i_R@1']:.3f} / {last['t2i_R@5']:.3f} / {last['t2i_R@10']:.3f} | {last['i2t_R@10']:.3f} "
        f"| {log['train_seconds']:.0f} s (load {log.get('load_average', '?')}) |"
    )


def main() -> None:
    names = sys.argv[1:] or sorted(p.stem for p in HERE.glob("*.json") if p.stem != "scratch")
    for name in names:
        log = json.loads((HERE / f"{name}.json").read_text())
        print(row(name, log))
        per_epoch = [f"{e['dev']['centroid_distance']:.3f}/{e['dev']['t2i_R@10']:.3f}" for e in log["epochs"]]
        print(f"  per epoch (centroid distance / t2i R@10): {' '.join(per_epoch)}")


if __name__ == "__main__":
    main()
