"""mixclip-gap's image tower trained whole, from random init vs from the base's pretrained weights
(issue 20, "image tower from scratch vs pretrained"), and what a training step of it costs here.

Both runs train the whole EfficientNet-Lite0 image tower with mixclip-gap's fresh MLP image head and
projection, and fresh text heads (BERT pooler + projection) on cached frozen text-trunk CLS features:
(a) the tower randomly initialised (train.py's ``randomise_image_tower``, seed 2), (b) the base's
ImageNet-pretrained tower (``gap.load_base()`` as is). Same heads (``gap.reset_heads``, seeds 1 and
2), same data order and caption picks (seed 0), InfoNCE at a fixed temperature 0.01, batch 64,
AdamW weight decay 0.1, one warm-up epoch then cosine decay (gap.fit's schedule); fresh weights at
lr 1e-3 and the base's pretrained weights at 1e-4 (gap.fit's lr / top_lr split), so the random tower
trains at 1e-3 and the pretrained one at 1e-4. BatchNorm in training mode; every BatchNorm's
statistics re-estimated over the first 1,000 training photos before each evaluation. The two runs
alternate epoch by epoch (A, B, A, B), so both see the same machine load. Photos are decoded and
resized once into a uint8 tensor (``gap.photo_pixels``).

    python benchmarks/gap_scratch.py cost --data ../shared/data/flickr8k            # 224 px step time
    python benchmarks/gap_scratch.py compare --data ../shared/data/flickr8k --size 112 --epochs 3

Both write into benchmarks/results/gap_variants/scratch.json (its "cost_<size>px" and "compare" keys).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mixsearch.training import gap
from mixsearch.training.train import load_split, randomise_image_tower

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "gap_variants" / "scratch.json"
TEXT_SEED, IMAGE_SEED, DATA_SEED = 1, 2, 0
LR, PRETRAINED_LR, WEIGHT_DECAY, TEMPERATURE = 1e-3, 1e-4, 0.1, 0.01
BN_PHOTOS = 1000


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build(scratch: bool):
    """The base with fresh heads; the image tower random (``scratch``) or pretrained; its optimizer."""
    model, processor = gap.load_base()
    if scratch:
        torch.manual_seed(IMAGE_SEED)
        randomise_image_tower(model.vision_model)
    gap.reset_heads(model, TEXT_SEED, IMAGE_SEED)
    model.logit_scale.data.fill_(math.log(1 / TEMPERATURE))
    heads = gap.head_parameters(model, nonlinear=True)  # freezes everything else
    tower = [p for p in model.vision_model.parameters() if not p.requires_grad]
    for p in tower:
        p.requires_grad_(True)
    groups = [{"params": heads, "lr": LR}, {"params": tower, "lr": LR if scratch else PRETRAINED_LR}]
    return model, processor, torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)


def image_embed(model, pixels: torch.Tensor) -> torch.Tensor:
    """The whole image tower and projection on uint8 photos (in whatever mode the model is in)."""
    return model.visual_projection(model.vision_model(pixel_values=gap.normalise_pixels(pixels)).pooler_output)


def step(model, optimizer, pixels: torch.Tensor, text: torch.Tensor) -> float:
    """One symmetric InfoNCE step; ``text``: cached CLS features of the photos' captions."""
    t = F.normalize(gap.text_head(model, text.float()), dim=-1)
    v = F.normalize(image_embed(model, pixels), dim=-1)
    logits = model.logit_scale.exp() * t @ v.T
    labels = torch.arange(len(pixels))
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def refit_batchnorm(model, pixels: torch.Tensor, batch_size: int = 100) -> None:
    """Every BatchNorm's statistics averaged exactly over ``pixels`` (drop-path off)."""
    bns = [m for m in model.vision_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.vision_model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for i in range(0, len(pixels), batch_size):
        model.vision_model(pixel_values=gap.normalise_pixels(pixels[i : i + batch_size]))
    for bn in bns:
        bn.momentum = 0.1
    model.vision_model.eval()


@torch.no_grad()
def evaluate(model, dev_text: torch.Tensor, dev_pixels: torch.Tensor) -> dict:
    model.eval()
    t = F.normalize(gap.text_head(model, dev_text.float()), dim=-1)
    v = torch.cat([image_embed(model, dev_pixels[i : i + 100]) for i in range(0, len(dev_pixels), 100)])
    return gap.gap_metrics(t, F.normalize(v, dim=-1))


def save(key: str, value: dict) -> None:
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    results[key] = value
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")


def cost(a) -> None:
    """Seconds per training step of the random tower (after one untimed warm-up step)."""
    model, processor, optimizer = build(scratch=True)
    rows = load_split(Path(a.data), "train")[: a.batch * (a.steps + 1)]
    text = gap.text_trunk(model, processor, [r["captions"][0] for r in rows])
    start = time.time()
    pixels = gap.photo_pixels([Path(a.data) / r["image"] for r in rows], a.size)
    decode = (time.time() - start) / (a.steps + 1)
    model.vision_model.train()
    times = []
    for i in range(a.steps + 1):
        t0 = time.time()
        step(model, optimizer, pixels[i * a.batch : (i + 1) * a.batch], text[i * a.batch : (i + 1) * a.batch])
        if i:  # the first step pays allocation and thread start-up
            times.append(round(time.time() - t0, 2))
    per_step = sum(times) / len(times)
    out = {
        "image_size": a.size,
        "batch": a.batch,
        "torch_threads": torch.get_num_threads(),
        "seconds_per_step": times,
        "mean_seconds_per_step": round(per_step, 2),
        "decode_seconds_per_batch": round(decode, 2),
        "hours_per_epoch_6000_photos": round(math.ceil(6000 / a.batch) * per_step / 3600, 3),
        "load_average": loadavg(),
    }
    save(f"cost_{a.size}px", out)
    print(json.dumps(out))


def compare(a) -> None:
    data, work = Path(a.data), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    train_rows, dev_rows = load_split(data, "train"), load_split(data, "dev")
    runs = {name: build(scratch=name == "scratch") for name in ("scratch", "pretrained")}
    feats = work / "text.pt"
    if not feats.is_file():  # the text side is frozen: its CLS features once, shared by both runs
        model, processor, _ = runs["pretrained"]
        captions = [c for r in train_rows for c in r["captions"]]
        torch.save(
            {
                "train": gap.text_trunk(model, processor, captions),
                "owner": torch.tensor([i for i, r in enumerate(train_rows) for _ in r["captions"]]),
                "dev": gap.text_trunk(model, processor, [r["captions"][0] for r in dev_rows]),
            },
            feats,
        )
    text = torch.load(feats, weights_only=True)
    photos = work / f"photos_{a.size}.pt"
    if not photos.is_file():
        start = time.time()
        torch.save(
            {
                "train": gap.photo_pixels([data / r["image"] for r in train_rows], a.size),
                "dev": gap.photo_pixels([data / r["image"] for r in dev_rows], a.size),
                "seconds": time.time() - start,
            },
            photos,
        )
    pixels = torch.load(photos, weights_only=True)
    n = len(pixels["train"])
    steps = math.ceil(n / a.batch)
    total = a.epochs * steps
    by_image = [torch.nonzero(text["owner"] == i).flatten() for i in range(n)]
    state = {}
    for name, (model, _, optimizer) in runs.items():
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / steps) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        )
        refit_batchnorm(model, pixels["train"][:BN_PHOTOS])
        row = {"epoch": 0, "dev": evaluate(model, text["dev"], pixels["dev"]), "load_average": loadavg()}
        print(name, json.dumps(row), flush=True)
        state[name] = {"schedule": schedule, "gen": torch.Generator().manual_seed(DATA_SEED), "epochs": [row]}
    log = {
        "image_size": a.size,
        "batch": a.batch,
        "epochs_planned": a.epochs,
        "temperature": TEMPERATURE,
        "lr": {"fresh": LR, "pretrained": PRETRAINED_LR},
        "weight_decay": WEIGHT_DECAY,
        "seeds": {"text_head": TEXT_SEED, "image": IMAGE_SEED, "data": DATA_SEED},
        "batchnorm_refit_photos": BN_PHOTOS,
        "torch_threads": torch.get_num_threads(),
        "decode_seconds": round(pixels["seconds"], 1),
        "runs": {name: s["epochs"] for name, s in state.items()},
    }
    for epoch in range(1, a.epochs + 1):
        for name, (model, _, optimizer) in runs.items():  # alternating: both see the same load
            s = state[name]
            order = torch.randperm(n, generator=s["gen"])
            model.eval()
            model.vision_model.train()
            start, running = time.time(), 0.0
            for i in range(steps):
                idx = order[i * a.batch : (i + 1) * a.batch]
                pick = torch.randint(0, 1 << 30, (len(idx),), generator=s["gen"])
                cap = torch.stack([by_image[j][p % len(by_image[j])] for j, p in zip(idx.tolist(), pick.tolist())])
                running += step(model, optimizer, pixels["train"][idx], text["train"][cap])
                s["schedule"].step()
                if i % 20 == 0:
                    print(f"{name} epoch {epoch} step {i}: {(time.time() - start) / (i + 1):.2f} s/step", flush=True)
            seconds = time.time() - start
            refit_batchnorm(model, pixels["train"][:BN_PHOTOS])
            row = {
                "epoch": epoch,
                "loss": round(running / steps, 4),
                "dev": evaluate(model, text["dev"], pixels["dev"]),
                "train_seconds": round(seconds, 1),
                "seconds_per_step": round(seconds / steps, 2),
                "load_average": loadavg(),
            }
            s["epochs"].append(row)
            print(name, json.dumps(row), flush=True)
            save("compare", log)  # after every epoch: a cut-short run keeps what it measured


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cost", help="time training steps of the random tower")
    c.add_argument("--data", required=True)
    c.add_argument("--size", type=int, default=224)
    c.add_argument("--batch", type=int, default=64)
    c.add_argument("--steps", type=int, default=3, help="timed steps, after one untimed warm-up step")
    r = sub.add_parser("compare", help="train both towers, alternating epochs")
    r.add_argument("--data", required=True)
    r.add_argument("--work", default="/tmp/gap-scratch", help="where the text features and photos are cached")
    r.add_argument("--size", type=int, default=112)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(2)
    cost(a) if a.command == "cost" else compare(a)


if __name__ == "__main__":
    main()
