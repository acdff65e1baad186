"""Train ``mixclip-gap``: mixclip-flickr8k's towers with fresh heads, trained so that CLIP's modality gap
stays, the way it arises in CLIP (Liang et al., "Mind the Gap", NeurIPS 2022).

Liang et al. show two causes: at initialisation each tower maps its inputs into a narrow cone of its
own (random non-linear layers do this), and contrastive training at a low temperature keeps the two
cones apart, since shifting one modality rigidly barely changes the InfoNCE loss there. So this recipe
takes the bundled model's frozen trunks (everything up to the BERT pooler and the EfficientNet head
conv), draws fresh random heads for both towers with different seeds (text: the BERT pooler
``tanh(dense(CLS))`` and its projection; image: the 1x1 head conv, its BatchNorm, ReLU6, the mean
pool and its projection), and trains only the heads with InfoNCE at a fixed low temperature. No shift is
added afterwards: the gap is what training leaves.

The heads are all that differ from ``mixclip-flickr8k``, so the bundled folder ships only them
(``heads.safetensors``, 3 MB) and names its base (``bundle.json``); :mod:`mixsearch.encoders.bundle` assembles the full
checkpoint on first use. Run (features of the trunks are cached once, each variant then takes minutes)::

    python -m mixsearch.training.gap cache --data ../shared/data/flickr8k --cache /tmp/gap-cache.pt
    python -m mixsearch.training.gap train --cache /tmp/gap-cache.pt --temperature 0.01 --out runs/gap
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..config import MODELS_DIR
from .train import MAX_TEXT_TOKENS, load_split

BASE = "mixclip-flickr8k"
#: The parameters a gap model replaces in its base; everything else is the base's, unchanged.
HEAD_PREFIXES = (
    "text_model.pooler.",
    "text_projection.",
    "vision_model.encoder.top_conv.",
    "vision_model.encoder.top_bn.",
    "visual_projection.",
    "logit_scale",
)


def load_base(folder: str | Path | None = None):
    """The base model (fp32, eval) and its processor."""
    from transformers import AutoModel, AutoProcessor

    folder = folder or MODELS_DIR / BASE
    return AutoModel.from_pretrained(folder, dtype=torch.float32).eval(), AutoProcessor.from_pretrained(folder)


# ------------------------------------------------------------------------------- frozen trunks


class _TextTrunk(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


def _onnx(module: torch.nn.Module, probe: tuple, names: list[str], dynamic: dict):
    """``module`` run by ONNX Runtime (about 3x faster than PyTorch on CPU here), else itself."""
    try:
        import tempfile

        import onnxruntime as ort
    except ImportError:
        return lambda *x: module(*x)
    path = f"{tempfile.mkdtemp()}/trunk.onnx"
    torch.onnx.export(
        module,
        probe,
        path,
        input_names=names,
        output_names=["out"],
        dynamic_axes=dynamic,
        dynamo=False,
        opset_version=17,
    )
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda *x: torch.from_numpy(session.run(None, {n: v.numpy() for n, v in zip(names, x)})[0])


@torch.no_grad()
def text_trunk(model, processor, texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """BERT's last hidden state at CLS (what the pooler reads), fp16."""
    probe = processor.tokenizer(["a probe", "another probe text"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask"]
    run = _onnx(
        _TextTrunk(model.text_model).eval(),
        tuple(probe[n] for n in names),
        names,
        {n: {0: "n", 1: "length"} for n in names},
    )
    out = torch.zeros(len(texts), model.config.text_config.hidden_size, dtype=torch.float16)
    order = np.argsort([len(t) for t in texts])  # similar lengths together: little padding
    for i in tqdm(range(0, len(texts), batch_size), desc="text trunk", leave=False):
        idx = order[i : i + batch_size]
        tok = processor.tokenizer(
            [texts[j] for j in idx], padding=True, truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt"
        )
        out[torch.as_tensor(idx)] = run(tok["input_ids"], tok["attention_mask"]).half()
    return out


class _ImageTrunk(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, pixels):
        hidden = self.net.embeddings(pixels)
        for block in self.net.encoder.blocks:
            hidden = block(hidden)
        return hidden


@torch.no_grad()
def image_trunk(model, processor, paths: list[Path], batch_size: int = 64) -> torch.Tensor:
    """EfficientNet's last block output (what the head conv reads), (n, 320, 7, 7) fp16."""
    run = _onnx(_ImageTrunk(model.vision_model).eval(), (torch.zeros(2, 3, 224, 224),), ["x"], {"x": {0: "n"}})
    feats = []
    for i in tqdm(range(0, len(paths), batch_size), desc="image trunk", leave=False):
        images = [Image.open(p).convert("RGB") for p in paths[i : i + batch_size]]
        feats.append(run(processor.image_processor(images=images, return_tensors="pt")["pixel_values"]).half())
    return torch.cat(feats)


def cache(data: str | Path, out: str | Path, base: str | Path | None = None, limit: int | None = None) -> Path:
    """Run the base's frozen trunks once over Flickr8k train and dev; save everything a variant needs."""
    torch.manual_seed(0)
    model, processor = load_base(base)
    data, start = Path(data), time.time()
    train_rows, dev_rows = load_split(data, "train", limit), load_split(data, "dev", limit)
    captions = [c for row in train_rows for c in row["captions"]]
    blob = {
        "train_text": text_trunk(model, processor, captions),
        "train_owner": torch.tensor([i for i, row in enumerate(train_rows) for _ in row["captions"]]),
        "train_image": image_trunk(model, processor, [data / r["image"] for r in train_rows]),
        "dev_text": text_trunk(model, processor, [r["captions"][0] for r in dev_rows]),
        "dev_image": image_trunk(model, processor, [data / r["image"] for r in dev_rows]),
        "seconds": time.time() - start,
    }
    torch.save(blob, out)
    return Path(out)


# ------------------------------------------------------------------------------- fresh heads


def reset_heads(model, text_seed: int, image_seed: int, nonlinear: bool = True) -> None:
    """Fresh random heads, one seed per tower (two towers never start in the same cone).

    ``nonlinear``: the BERT pooler and the head conv + BatchNorm are drawn afresh too; else only the
    two linear projections are (the pooler and head conv stay the base's, frozen)."""
    torch.manual_seed(text_seed)
    if nonlinear:
        model.text_model.pooler.dense.reset_parameters()
    model.text_projection.reset_parameters()
    torch.manual_seed(image_seed)
    if nonlinear:
        model.vision_model.encoder.top_conv.reset_parameters()
        model.vision_model.encoder.top_bn.reset_parameters()  # statistics re-estimated after training
    model.visual_projection.reset_parameters()


def head_parameters(model, nonlinear: bool) -> list[torch.nn.Parameter]:
    """The heads' parameters (the temperature apart); everything else is frozen."""
    heads = [model.text_projection, model.visual_projection]
    if nonlinear:
        enc = model.vision_model.encoder
        heads += [model.text_model.pooler, enc.top_conv, enc.top_bn]
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in heads for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def text_head(model, cls: torch.Tensor) -> torch.Tensor:
    """Cached CLS hidden states -> projected text embeddings (BERT pooler, then the projection)."""
    return model.text_projection(model.text_model.pooler(cls.unsqueeze(1)))


def image_head(model, hidden: torch.Tensor) -> torch.Tensor:
    """Cached last-block features -> projected image embeddings (head conv, BN, ReLU6, pool, projection)."""
    net = model.vision_model
    enc = net.encoder
    pooled = net.pooler(enc.top_activation(enc.top_bn(enc.top_conv(hidden)))).flatten(1)
    return model.visual_projection(pooled)


@torch.no_grad()
def embed(model, text: torch.Tensor, image: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised embeddings of cached features (eval mode)."""
    model.eval()
    t = torch.cat([text_head(model, text[i : i + batch_size].float()) for i in range(0, len(text), batch_size)])
    v = torch.cat([image_head(model, image[i : i + batch_size].float()) for i in range(0, len(image), batch_size)])
    return F.normalize(t, dim=-1), F.normalize(v, dim=-1)


def gap_metrics(t: torch.Tensor, v: torch.Tensor) -> dict[str, float]:
    """t2i/i2t Recall@k of row-aligned pairs, the centroid distance (the audit's definition), and mean
    cosines of unrelated pairs within and across modalities."""
    from .train import retrieval_metrics

    out = retrieval_metrics(t, v)
    n = len(t)
    off = ~torch.eye(n, dtype=torch.bool)
    out["cos_text_text"] = round((t @ t.T)[off].mean().item(), 4)
    out["cos_image_image"] = round((v @ v.T)[off].mean().item(), 4)
    out["cos_text_image_unrelated"] = round((t @ v.T)[off].mean().item(), 4)
    out["cos_text_image_matched"] = round((t * v).sum(1).mean().item(), 4)
    return out


@torch.no_grad()
def refit_batchnorm(model, images: torch.Tensor, batch_size: int = 500) -> None:
    """Exact running statistics of the head BatchNorm over the training features."""
    enc = model.vision_model.encoder
    bn = enc.top_bn
    bn.reset_running_stats()
    bn.momentum = None  # cumulative average over the pass
    bn.train()
    for i in range(0, len(images), batch_size):
        bn(enc.top_conv(images[i : i + batch_size].float()))
    bn.momentum = 0.1
    bn.eval()


def fit(
    model,
    blob: dict,
    *,
    epochs: int = 10,
    temperature: float | None = 0.01,
    nonlinear: bool = True,
    text_seed: int = 1,
    image_seed: int = 2,
    seed: int = 0,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
) -> list[dict]:
    """Train fresh heads on cached trunk features; ``temperature`` None learns it (CLIP's start, 0.07).

    Returns the dev metrics at initialisation (epoch 0) and after each epoch."""
    reset_heads(model, text_seed, image_seed, nonlinear)
    learn_t = temperature is None
    model.logit_scale.data.fill_(math.log(1 / (0.07 if learn_t else temperature)))
    params = head_parameters(model, nonlinear)
    groups = [{"params": params, "lr": lr}]
    if learn_t:
        model.logit_scale.requires_grad_(True)
        groups.append({"params": [model.logit_scale], "lr": lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    images, texts, owner = blob["train_image"], blob["train_text"], blob["train_owner"]
    n = len(images)
    steps = math.ceil(n / batch_size)
    total = epochs * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / steps) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    by_image = [torch.nonzero(owner == i).flatten() for i in range(n)]
    gen = torch.Generator().manual_seed(seed)
    if nonlinear:
        refit_batchnorm(model, images)  # epoch 0 is measured with the fresh conv's own statistics

    def record(epoch: int, loss: float | None) -> dict:
        row = {
            "epoch": epoch,
            "loss": None if loss is None else round(loss, 4),
            "temperature": round(1 / model.logit_scale.exp().item(), 4),
            "dev": gap_metrics(*embed(model, blob["dev_text"], blob["dev_image"])),
        }
        tqdm.write(json.dumps(row))
        return row

    history = [record(0, None)]
    for epoch in range(epochs):
        model.eval()
        if nonlinear:
            model.vision_model.encoder.top_bn.train()  # batch statistics while the conv changes
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            pick = torch.randint(0, 1 << 30, (len(idx),), generator=gen)
            cap = torch.stack([by_image[i][p % len(by_image[i])] for i, p in zip(idx.tolist(), pick.tolist())])
            t = F.normalize(text_head(model, texts[cap].float()), dim=-1)
            v = F.normalize(image_head(model, images[idx].float()), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * t @ v.T
            labels = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
        if nonlinear:
            refit_batchnorm(model, images)
        history.append(record(epoch + 1, running / steps))
    return history


def heads_state(model) -> dict[str, torch.Tensor]:
    """The tensors a gap model replaces in its base (fp16, as the base is stored)."""
    state = model.state_dict()
    return {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in state.items()
        if k.startswith(HEAD_PREFIXES)
    }


def save_bundle(model, out: str | Path, log: dict, base: str = BASE) -> Path:
    """The bundled folder: base's config and preprocessing files, ``heads.safetensors``, ``bundle.json``."""
    import shutil

    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = MODELS_DIR / base
    for name in (
        "config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    save_file(heads_state(model), str(out / "heads.safetensors"))
    (out / "bundle.json").write_text(json.dumps({"base": base, "heads": "heads.safetensors"}, indent=2) + "\n")
    (out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return out


def train(cache_file: str | Path, out: str | Path | None = None, *, base: str | Path | None = None, **options) -> dict:
    """One variant: fresh heads trained on the cached features; saved as a bundle when ``out`` is given."""
    start = time.time()
    blob = torch.load(cache_file, weights_only=True)
    model, _ = load_base(base)
    history = fit(model, blob, **options)
    log = {"options": options, "train_seconds": round(time.time() - start, 1), "epochs": history}
    if out:
        save_bundle(model, out, log)
    return log


def main(argv: list[str] | None = None) -> None:
    """Command line of ``python -m mixsearch.training.gap``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="run the frozen trunks once")
    c.add_argument("--data", required=True)
    c.add_argument("--cache", required=True)
    c.add_argument("--limit", type=int, default=None)
    t = sub.add_parser("train", help="train one variant's heads on the cached features")
    t.add_argument("--cache", required=True)
    t.add_argument("--out", default=None, help="save the bundled folder here")
    t.add_argument("--log", default=None, help="write the variant's log (JSON) here")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--temperature", type=float, default=0.01, help="fixed; 0 = learned from 0.07")
    t.add_argument("--linear", action="store_true", help="fresh projections only (pooler, head conv kept)")
    t.add_argument("--text-seed", type=int, default=1)
    t.add_argument("--image-seed", type=int, default=2)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.1)
    a = p.parse_args(argv)
    if a.command == "cache":
        path = cache(a.data, a.cache, limit=a.limit)
        print(json.dumps({"cache": str(path)}))
    else:
        log = train(
            a.cache,
            a.out,
            epochs=a.epochs,
            temperature=a.temperature or None,
            nonlinear=not a.linear,
            text_seed=a.text_seed,
            image_seed=a.image_seed,
            lr=a.lr,
            weight_decay=a.weight_decay,
        )
        if a.log:
            Path(a.log).write_text(json.dumps(log, indent=2) + "\n")


if __name__ == "__main__":
    main()
