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

The variants of the model card's study: ``train --linear`` (fresh projections only), ``train
--temperature 0`` (learned), ``cache --train-top`` (stops below the last BERT layer and EfficientNet
block, which ``train`` then trains too, as mixclip-flickr8k's recipe does) and ``cache --random-image
SEED`` (a random frozen image trunk; ``--text-from`` reuses another cache's text features).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..config import MODELS_DIR
from ..errors import UsageError
from . import train as base_recipe
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
    """The text tower below its top ``layers`` BERT layers (train.py's trunk); CLS only when 0."""

    def __init__(self, model, layers: int = 0):
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, input_ids, attention_mask):
        hidden = base_recipe.text_trunk(self.model, input_ids, attention_mask, self.layers)
        return hidden[:, 0] if self.layers == 0 else hidden


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
def text_trunk(model, processor, texts: list[str], batch_size: int = 128, layers: int = 0):
    """BERT's last hidden state at CLS (what the pooler reads), fp16, (n, 384).

    ``layers`` > 0: the hidden states entering the top ``layers`` BERT layers at every position,
    (n, longest, 384), and their attention mask (n, longest)."""
    probe = processor.tokenizer(["a probe", "another probe text"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask"]
    run = _onnx(
        _TextTrunk(model, layers).eval(),
        tuple(probe[n] for n in names),
        names,
        {n: {0: "n", 1: "length"} for n in names},
    )
    tok = processor.tokenizer(
        texts, padding="longest", truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt"
    )
    mask = tok["attention_mask"]
    width = () if layers == 0 else (mask.shape[1],)
    out = torch.zeros(len(texts), *width, model.config.text_config.hidden_size, dtype=torch.float16)
    order = mask.sum(1).argsort()  # similar lengths together: little padding
    for i in tqdm(range(0, len(texts), batch_size), desc="text trunk", leave=False):
        idx = order[i : i + batch_size]
        n = int(mask[idx].sum(1).max())
        hidden = run(tok["input_ids"][idx, :n], mask[idx, :n]).half()
        if layers:
            out[idx, :n] = hidden
        else:
            out[idx] = hidden
    return out if layers == 0 else (out, mask)


class _ImageTrunk(torch.nn.Module):
    """The image tower below its top ``blocks`` EfficientNet blocks (all blocks when 0)."""

    def __init__(self, model, blocks: int = 0):
        super().__init__()
        self.model, self.blocks = model, blocks

    def forward(self, pixels):
        if self.blocks:
            return base_recipe.image_trunk(self.model, pixels, self.blocks)
        net = self.model.vision_model
        hidden = net.embeddings(pixels)
        for block in net.encoder.blocks:
            hidden = block(hidden)
        return hidden


@torch.no_grad()
def image_trunk(
    model, processor, paths: list[Path], batch_size: int = 64, blocks: int = 0, mirror: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """EfficientNet's last block output (what the head conv reads), (n, 320, 7, 7) fp16; with
    ``blocks`` the input of the top ``blocks`` blocks instead. ``mirror``: also the photos mirrored
    (train.py's augmentation; flipping the centre-cropped pixels is mirroring the photo)."""
    run = _onnx(_ImageTrunk(model, blocks).eval(), (torch.zeros(2, 3, 224, 224),), ["x"], {"x": {0: "n"}})
    feats, flipped = [], []
    for i in tqdm(range(0, len(paths), batch_size), desc="image trunk", leave=False):
        images = [Image.open(p).convert("RGB") for p in paths[i : i + batch_size]]
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        feats.append(run(pixels).half())
        if mirror:
            flipped.append(run(pixels.flip(-1).contiguous()).half())
    return (torch.cat(feats), torch.cat(flipped)) if mirror else torch.cat(feats)


def photo_pixels(paths: list[Path], size: int) -> torch.Tensor:
    """Photos decoded once, shortest edge resized to ``size`` (bicubic, as the base's processor) and
    centre-cropped: (n, 3, size, size) uint8, so a run that trains the image tower decodes nothing per
    step. JPEG ``draft`` decodes at the smallest scale still >= ``size`` (several times faster)."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, path in enumerate(tqdm(paths, desc=f"photos at {size} px", leave=False)):
        image = Image.open(path)
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((rw, rh), Image.Resampling.BICUBIC)
        left, top = (rw - size) // 2, (rh - size) // 2
        image = image.crop((left, top, left + size, top + size))
        out[i] = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)
    return out


def normalise_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 photos -> the base's pixel values (rescale to [0, 1], mean 0.5, std 0.5: [-1, 1])."""
    return pixels.float() / 127.5 - 1.0


#: What ``--train-top`` trains above the cache, as mixclip-flickr8k's recipe (train.py) does.
TOP_TEXT_LAYERS, TOP_IMAGE_BLOCKS = 1, 1
TEXT_KEYS = ("train_text", "train_text_mask", "train_owner", "dev_text", "dev_text_mask")


def cache(
    data: str | Path,
    out: str | Path,
    base: str | Path | None = None,
    limit: int | None = None,
    *,
    train_top: bool = False,
    random_image: int | None = None,
    text_from: str | Path | None = None,
) -> Path:
    """Run the base's frozen trunks once over Flickr8k train and dev; save everything a variant needs.

    ``train_top``: stop below the last BERT layer and the last EfficientNet block (so a variant can
    train them) and keep the training photos mirrored too. ``random_image``: the image trunk is a
    random Lite0 drawn with this seed instead of the base's. ``text_from``: copy the text features
    from that cache (same data and ``train_top``) instead of recomputing them."""
    torch.manual_seed(0)
    model, processor = load_base(base)
    if random_image is not None:
        torch.manual_seed(random_image)
        base_recipe.randomise_image_tower(model.vision_model)
    data, start = Path(data), time.time()
    train_rows, dev_rows = load_split(data, "train", limit), load_split(data, "dev", limit)
    layers, blocks = (TOP_TEXT_LAYERS, TOP_IMAGE_BLOCKS) if train_top else (0, 0)
    blob: dict = {"text_layers": layers, "image_blocks": blocks, "random_image": random_image}
    if text_from:
        old = torch.load(text_from, weights_only=True)
        if old.get("text_layers", 0) != layers or len(old["dev_text"]) != len(dev_rows):
            raise UsageError(f"{text_from}: text features of another cache layout or split")
        blob.update({k: old[k] for k in TEXT_KEYS if k in old})
    else:
        captions = [c for row in train_rows for c in row["captions"]]
        for split, texts in (("train", captions), ("dev", [r["captions"][0] for r in dev_rows])):
            feats = text_trunk(model, processor, texts, layers=layers)
            if layers:
                blob[f"{split}_text"], blob[f"{split}_text_mask"] = feats
            else:
                blob[f"{split}_text"] = feats
        blob["train_owner"] = torch.tensor([i for i, row in enumerate(train_rows) for _ in row["captions"]])
    images = image_trunk(model, processor, [data / r["image"] for r in train_rows], blocks=blocks, mirror=train_top)
    if train_top:
        blob["train_image"], blob["train_image_mirrored"] = images
    else:
        blob["train_image"] = images
    blob["dev_image"] = image_trunk(model, processor, [data / r["image"] for r in dev_rows], blocks=blocks)
    blob["seconds"] = time.time() - start
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


def top_modules(model, text_layers: int, image_blocks: int) -> list[torch.nn.Module]:
    """The pretrained layers trained above a ``--train-top`` cache (the base's, not drawn afresh)."""
    text, image = list(model.text_model.encoder.layer), list(model.vision_model.encoder.blocks)
    return text[len(text) - text_layers :] + image[len(image) - image_blocks :]


def text_head(model, hidden: torch.Tensor, mask: torch.Tensor | None = None, layers: int = 0) -> torch.Tensor:
    """Cached CLS hidden states -> projected text embeddings (BERT pooler, then the projection); with
    ``layers``, cached hidden states of every position run through the top BERT layers first."""
    if layers == 0:
        hidden, mask = hidden.unsqueeze(1), None
    return base_recipe.text_top(model, hidden, mask, layers)


def image_head(model, hidden: torch.Tensor, blocks: int = 0) -> torch.Tensor:
    """Cached last-block features -> projected image embeddings (head conv, BN, ReLU6, pool, projection);
    with ``blocks``, cached features run through the top EfficientNet blocks first."""
    if blocks:
        return base_recipe.image_top(model, hidden, blocks)
    net = model.vision_model
    enc = net.encoder
    pooled = net.pooler(enc.top_activation(enc.top_bn(enc.top_conv(hidden)))).flatten(1)
    return model.visual_projection(pooled)


def _trim(hidden: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop the padding columns no row of this batch uses (the cache pads to the longest caption)."""
    if mask is None:
        return hidden, None
    n = int(mask.sum(1).max())
    return hidden[:, :n], mask[:, :n]


@torch.no_grad()
def embed(
    model,
    text: torch.Tensor,
    image: torch.Tensor,
    batch_size: int = 500,
    text_mask: torch.Tensor | None = None,
    text_layers: int = 0,
    image_blocks: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised embeddings of cached features (eval mode)."""
    model.eval()
    t = []
    for i in range(0, len(text), batch_size):
        hidden, mask = _trim(text[i : i + batch_size], None if text_mask is None else text_mask[i : i + batch_size])
        t.append(text_head(model, hidden.float(), mask, text_layers))
    v = [image_head(model, image[i : i + batch_size].float(), image_blocks) for i in range(0, len(image), batch_size)]
    return F.normalize(torch.cat(t), dim=-1), F.normalize(torch.cat(v), dim=-1)


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
def refit_batchnorm(model, images: torch.Tensor, batch_size: int = 500, blocks: int = 0) -> None:
    """Exact running statistics of the head BatchNorm over the training features (run through the
    top ``blocks`` blocks, in eval mode, first)."""
    enc = model.vision_model.encoder
    bn = enc.top_bn
    bn.reset_running_stats()
    bn.momentum = None  # cumulative average over the pass
    bn.train()
    for i in range(0, len(images), batch_size):
        hidden = images[i : i + batch_size].float()
        for block in list(enc.blocks)[len(enc.blocks) - blocks :]:
            hidden = block(hidden)
        bn(enc.top_conv(hidden))
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
    top_lr: float = 1e-4,
    weight_decay: float = 0.1,
) -> list[dict]:
    """Train fresh heads on cached trunk features; ``temperature`` None learns it (CLIP's start, 0.07).

    A ``--train-top`` cache (``text_layers``/``image_blocks`` in ``blob``) also trains the base's top
    BERT layer and EfficientNet block at ``top_lr`` (train.py's split: pretrained layers slower than
    fresh heads), their BatchNorms kept in eval mode as train.py does, on plain and mirrored photos.

    Returns the dev metrics at initialisation (epoch 0) and after each epoch."""
    layers, blocks = blob.get("text_layers", 0), blob.get("image_blocks", 0)
    reset_heads(model, text_seed, image_seed, nonlinear)
    learn_t = temperature is None
    model.logit_scale.data.fill_(math.log(1 / (0.07 if learn_t else temperature)))
    params = head_parameters(model, nonlinear)
    groups = [{"params": params, "lr": lr}]
    tops = top_modules(model, layers, blocks)
    if tops:
        top_params = [p for m in tops for p in m.parameters()]
        for p in top_params:
            p.requires_grad_(True)
        groups.append({"params": top_params, "lr": top_lr})
    if learn_t:
        model.logit_scale.requires_grad_(True)
        groups.append({"params": [model.logit_scale], "lr": lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    images, texts, owner = blob["train_image"], blob["train_text"], blob["train_owner"]
    mirrored, text_mask = blob.get("train_image_mirrored"), blob.get("train_text_mask")
    n = len(images)
    steps = math.ceil(n / batch_size)
    total = epochs * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / steps) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    by_image = [torch.nonzero(owner == i).flatten() for i in range(n)]
    gen = torch.Generator().manual_seed(seed)
    if nonlinear:
        refit_batchnorm(model, images, blocks=blocks)  # epoch 0 is measured with the fresh conv's own statistics

    def record(epoch: int, loss: float | None) -> dict:
        dev = embed(model, blob["dev_text"], blob["dev_image"], 500, blob.get("dev_text_mask"), layers, blocks)
        row = {
            "epoch": epoch,
            "loss": None if loss is None else round(loss, 4),
            "temperature": round(1 / model.logit_scale.exp().item(), 4),
            "dev": gap_metrics(*dev),
            "seconds": round(time.time() - start, 1),
        }
        tqdm.write(json.dumps(row))
        return row

    start = time.time()
    history = [record(0, None)]
    for epoch in range(epochs):
        model.eval()
        if nonlinear:
            model.vision_model.encoder.top_bn.train()  # batch statistics while the conv changes
        if layers:
            model.text_model.encoder.layer[-layers:].train()  # dropout, as train.py trains it
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            pick = torch.randint(0, 1 << 30, (len(idx),), generator=gen)
            cap = torch.stack([by_image[i][p % len(by_image[i])] for i, p in zip(idx.tolist(), pick.tolist())])
            hidden, mask = _trim(texts[cap], None if text_mask is None else text_mask[cap])
            t = F.normalize(text_head(model, hidden.float(), mask, layers), dim=-1)
            view = images[idx]
            if mirrored is not None:  # each photo as is or mirrored, at random (train.py's augmentation)
                flip = torch.rand(len(idx), generator=gen) < 0.5
                view = torch.where(flip.view(-1, 1, 1, 1), mirrored[idx], view)
            v = F.normalize(image_head(model, view.float(), blocks), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * t @ v.T
            labels = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
        if nonlinear:
            refit_batchnorm(model, images, blocks=blocks)
        history.append(record(epoch + 1, running / steps))
    return history


def top_prefixes(model, text_layers: int = 0, image_blocks: int = 0) -> tuple[str, ...]:
    """State-dict prefixes of the layers :func:`top_modules` trains."""
    n_text, n_image = len(model.text_model.encoder.layer), len(model.vision_model.encoder.blocks)
    return tuple(f"text_model.encoder.layer.{i}." for i in range(n_text - text_layers, n_text)) + tuple(
        f"vision_model.encoder.blocks.{i}." for i in range(n_image - image_blocks, n_image)
    )


def heads_state(model, extra: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors a gap model replaces in its base (fp16, as the base is stored); ``extra``: more
    prefixes (the top layers a ``--train-top`` variant trained)."""
    state = model.state_dict()
    return {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in state.items()
        if k.startswith(HEAD_PREFIXES + extra)
    }


def save_bundle(model, out: str | Path, log: dict, base: str = BASE, extra: tuple[str, ...] = ()) -> Path:
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
    save_file(heads_state(model, extra), str(out / "heads.safetensors"))
    (out / "bundle.json").write_text(json.dumps({"base": base, "heads": "heads.safetensors"}, indent=2) + "\n")
    (out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return out


def train(cache_file: str | Path, out: str | Path | None = None, *, base: str | Path | None = None, **options) -> dict:
    """One variant: fresh heads trained on the cached features; saved as a bundle when ``out`` is given."""
    start = time.time()
    blob = torch.load(cache_file, weights_only=True)
    if blob.get("random_image") is not None and out:
        raise UsageError("a random image trunk is not the base's: its variant cannot be saved as a bundle")
    model, _ = load_base(base)
    history = fit(model, blob, **options)
    layout = {k: blob.get(k, 0) for k in ("text_layers", "image_blocks")} | {"random_image": blob.get("random_image")}
    log = {
        "options": options,
        "cache": layout,
        "train_seconds": round(time.time() - start, 1),
        "load_average": _loadavg(),
        "epochs": history,
    }
    if out:
        save_bundle(model, out, log, extra=top_prefixes(model, layout["text_layers"], layout["image_blocks"]))
    return log


def _loadavg() -> str | None:
    """The 1/5/15-minute load average at the end of a run (the machine is shared), where Linux says."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    """Command line of ``python -m mixsearch.training.gap``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="run the frozen trunks once")
    c.add_argument("--data", required=True)
    c.add_argument("--cache", required=True)
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--train-top", action="store_true", help="stop below the last BERT layer and EfficientNet block")
    c.add_argument("--random-image", type=int, default=None, metavar="SEED", help="a random image trunk instead")
    c.add_argument("--text-from", default=None, metavar="CACHE", help="reuse this cache's text features")
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
    t.add_argument("--top-lr", type=float, default=1e-4, help="for the top layers of a --train-top cache")
    t.add_argument("--weight-decay", type=float, default=0.1)
    a = p.parse_args(argv)
    if a.command == "cache":
        path = cache(
            a.data, a.cache, limit=a.limit, train_top=a.train_top, random_image=a.random_image, text_from=a.text_from
        )
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
            top_lr=a.top_lr,
            weight_decay=a.weight_decay,
        )
        if a.log:
            Path(a.log).write_text(json.dumps(log, indent=2) + "\n")


if __name__ == "__main__":
    main()
