"""What training mixclip-gap's image tower from scratch would cost here (issue 20's variant 3b).

Times training steps of the whole EfficientNet-Lite0 image tower, randomly initialised (train.py's
``randomise_image_tower``), BatchNorm in training mode, with mixclip-gap's fresh image head and
projection, at 224 px, batch 64, against the frozen text side (cached CLS features of the trunk cache
through the base's text head), symmetric InfoNCE at temperature 0.01, AdamW. Decoding and
preprocessing the photos is timed apart (a real run pays it every step, or caches pixels).

    python benchmarks/gap_scratch_cost.py --data ../shared/data/flickr8k --cache /tmp/gap-cache.pt

Writes benchmarks/results/gap_variants/scratch_cost.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from mixsearch.training import gap
from mixsearch.training.train import load_split, randomise_image_tower

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--cache", required=True, help="a trunk cache (its CLS text features are used)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=4, help="timed steps, after one untimed warm-up step")
    p.add_argument("--out", default=str(HERE / "results" / "gap_variants" / "scratch_cost.json"))
    a = p.parse_args()

    torch.manual_seed(0)
    model, processor = gap.load_base()
    randomise_image_tower(model.vision_model)
    gap.reset_heads(model, 1, 2)
    model.logit_scale.data.fill_(4.6052)  # temperature 0.01
    for q in model.parameters():
        q.requires_grad_(False)
    params = [*model.vision_model.parameters(), *model.visual_projection.parameters()]
    for q in params:
        q.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)

    rows = load_split(Path(a.data), "train")[: a.batch * (a.steps + 1)]
    blob = torch.load(a.cache, weights_only=True)
    with torch.no_grad():
        text = F.normalize(gap.text_head(model, blob["train_text"][: len(rows) * 5 : 5].float()), dim=-1)

    start = time.time()
    batches = []
    for i in range(0, len(rows), a.batch):
        images = [Image.open(Path(a.data) / r["image"]).convert("RGB") for r in rows[i : i + a.batch]]
        batches.append(processor.image_processor(images=images, return_tensors="pt")["pixel_values"])
    preprocess = (time.time() - start) / len(batches)

    model.vision_model.train()
    times = []
    for step, pixels in enumerate(batches):
        t0 = time.time()
        v = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        t = text[step * a.batch : step * a.batch + len(pixels)]
        logits = model.logit_scale.exp() * t @ v.T
        labels = torch.arange(len(pixels))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:  # the first step pays allocation and thread start-up
            times.append(time.time() - t0)
    per_step = sum(times) / len(times)
    steps_per_epoch = -(-6000 // a.batch)
    out = {
        "batch": a.batch,
        "image_size": 224,
        "torch_threads": torch.get_num_threads(),
        "timed_steps": len(times),
        "seconds_per_step": [round(x, 2) for x in times],
        "mean_seconds_per_step": round(per_step, 2),
        "preprocess_seconds_per_batch": round(preprocess, 2),
        "steps_per_epoch_6000_photos": steps_per_epoch,
        "hours_per_epoch": round(steps_per_epoch * (per_step + preprocess) / 3600, 2),
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
