"""Generative (VLM) embedders: tiny random Qwen2-VL (GME, VLM2Vec-Qwen2VL) and LLaVA-NeXT (E5-V)
checkpoints built here, loaded by ``load_encoder``, checked against a direct transformers
computation (the same prompt, the last token's hidden state, normalised), then indexed, searched,
audited and calibrated by every method like any CLIP model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mixsearch as ms
from mixsearch import bench as B
from mixsearch.audit import audit_index
from mixsearch.bench.cost import cost_table, model_cost
from mixsearch.calibration import METHODS, fit_calibration
from mixsearch.encoders.base import Encoder
from mixsearch.encoders.vlm import FAMILIES, VLMEncoder, family_of
from mixsearch.errors import ModelError

WORDS = "a dog cat beach ball red blue runs jumps grass snow child water bike street man woman".split()


def _byte_tokenizer(specials: list[str]):
    """A real ``Qwen2Tokenizer`` over single byte-level characters, with the model's special tokens."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.pad_token = "<|endoftext|>"
    return tok


def make_qwen2_vl(folder: Path, seed: int = 0) -> Path:
    """A tiny Qwen2-VL (GME's architecture): 2 layers of width 32, a 1-layer vision tower."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = _byte_tokenizer(specials)
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
    )
    vision = dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2)
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16).save_pretrained(folder)
    return folder


def make_llava_next(folder: Path, seed: int = 0) -> Path:
    """A tiny LLaVA-NeXT (E5-V's architecture): a 2-layer CLIP vision tower on 28-pixel crops, a
    2-layer Llama of width 32."""
    import torch
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tok = _byte_tokenizer(["<image>"])
    grid = [[28, 56], [56, 28], [56, 56]]
    config = LlavaNextConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=grid,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    LlavaNextForConditionalGeneration(config).save_pretrained(folder)
    images = LlavaNextImageProcessor(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, image_grid_pinpoints=grid
    )
    LlavaNextProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory) -> Path:
    return make_qwen2_vl(tmp_path_factory.mktemp("gme-qwen2-vl"))


@pytest.fixture(scope="module")
def llava_next(tmp_path_factory) -> Path:
    return make_llava_next(tmp_path_factory.mktemp("e5-v-llava-next"))


def _image(seed: int, size: tuple[int, int] = (40, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _direct(folder: Path, prompt: str, image: Image.Image | None) -> np.ndarray:
    """The embedding as transformers computes it for one prompt: the final hidden state at the
    last token, L2-normalised."""
    import torch
    import transformers

    config = json.loads((folder / "config.json").read_text())
    with torch.inference_mode():
        if config["model_type"] == "qwen2_vl":
            model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(folder).eval()
            tok = transformers.AutoTokenizer.from_pretrained(folder)
            extra = {}
            if image is not None:
                extra = dict(
                    transformers.AutoImageProcessor.from_pretrained(folder)(images=[image], return_tensors="pt")
                )
                n = int(extra["image_grid_thw"][0].prod()) // 4
                prompt = prompt.replace("<|image_pad|>", "<|image_pad|>" * n)
            inputs = dict(tok([prompt], return_tensors="pt"))
            if image is not None:
                inputs["mm_token_type_ids"] = (inputs["input_ids"] == config["image_token_id"]).int()
            out = model(**inputs, **extra, output_hidden_states=True)
        else:
            model = transformers.LlavaNextForConditionalGeneration.from_pretrained(folder).eval()
            processor = transformers.AutoProcessor.from_pretrained(folder)
            images = {"images": [image]} if image is not None else {}
            out = model(**processor(text=[prompt], return_tensors="pt", **images), output_hidden_states=True)
    vector = out.hidden_states[-1][0, -1].numpy()
    return vector / np.linalg.norm(vector)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "family_name"),
    # VLM2Vec's prompts and last-token pooling on its Qwen2-VL backbone (Phi-3.5-V needs remote code)
    [("qwen2_vl", "gme"), ("qwen2_vl", "vlm2vec"), ("llava_next", "e5v")],
)
def test_embeddings_equal_a_direct_transformers_computation(which, family_name, request):
    folder = request.getfixturevalue(which)
    default = {"qwen2_vl": "gme", "llava_next": "e5v"}[which]
    encoder = ms.load_encoder(folder) if family_name == default else VLMEncoder(str(folder), family=family_name)
    assert isinstance(encoder, VLMEncoder)
    family = FAMILIES[family_name]
    assert encoder.family == family and encoder.dim == 32
    token = encoder.image_token
    texts = ["a dog runs on the beach", "red ball"]
    images = [_image(1, (40, 40)), _image(2, (64, 30)), _image(3, (41, 39))]
    # texts, as documents and as queries (GME's query prompt differs; E5-V's is the same)
    docs, queries = encoder.encode(texts, "text"), encoder.encode_query(texts, "text")
    for i, text in enumerate(texts):
        np.testing.assert_allclose(docs[i], _direct(folder, family.doc_text.format(text=text), None), atol=2e-5)
        np.testing.assert_allclose(queries[i], _direct(folder, family.query_text.format(text=text), None), atol=2e-5)
    # images of different sizes in one batch (run in size groups, back in the order given)
    vectors = encoder.encode(images, "image")
    for i, image in enumerate(images):
        np.testing.assert_allclose(vectors[i], _direct(folder, family.doc_image.format(image=token), image), atol=2e-5)
    # image+text: one prompt with both, one vector
    joint = encoder.encode_multimodal(texts, images[:2])
    assert joint.shape == (2, 32)
    for i in range(2):
        prompt = family.doc_multimodal.format(image=token, text=texts[i])
        np.testing.assert_allclose(joint[i], _direct(folder, prompt, images[i]), atol=2e-5)
    assert not np.allclose(joint[0], docs[0]) and not np.allclose(joint[0], vectors[0])


def test_family_from_the_name_then_the_model_type():
    assert family_of("TIGER-Lab/VLM2Vec-Qwen2VL-2B", "qwen2_vl").name == "vlm2vec"
    assert family_of("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", "qwen2_vl").name == "gme"
    assert family_of("royokong/e5-v", "llava_next").name == "e5v"
    assert family_of("someone/qwen2-vl-embedder", "qwen2_vl").name == "gme"  # the model type's default
    assert family_of("TIGER-Lab/VLM2Vec-Full", "phi3_v").name == "vlm2vec"
    assert family_of("x/y", "llava_next", "E5-V").name == "e5v"
    with pytest.raises(ms.UsageError, match="unknown VLM family"):
        family_of("x/y", "qwen2_vl", "nope")


@pytest.mark.slow
def test_family_from_the_name_and_explicit(qwen2_vl, tmp_path):
    named = tmp_path / "VLM2Vec-Qwen2VL-tiny"
    named.symlink_to(qwen2_vl, target_is_directory=True)
    assert ms.load_encoder(named).family.name == "vlm2vec"
    encoder = VLMEncoder(str(qwen2_vl), family="vlm2vec")
    assert encoder.family.name == "vlm2vec" and encoder.info()["family"] == "vlm2vec"
    assert encoder.fingerprint != ms.load_encoder(qwen2_vl).fingerprint  # prompts change embeddings
    with pytest.raises(ms.UsageError, match="unknown VLM family"):
        VLMEncoder(str(qwen2_vl), family="nope")


def test_phi3_v_without_its_code_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "phi3_v", "architectures": ["Phi3VForCausalLM"]}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match=r"Phi-3.5-V.*modeling_phi3_v.py"):
        ms.load_encoder(tmp_path)
    for name in ("modeling_phi3_v.py", "processing_phi3_v.py"):
        (tmp_path / name).write_text("# remote code\n")
    with pytest.raises(ModelError, match="trust_remote_code=True"):
        ms.load_encoder(tmp_path)


def _corpus(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    (folder / "img").mkdir()
    records = []
    for i in range(12):
        text = " ".join(rng.choice(WORDS, 5))
        image = folder / "img" / f"{i}.png"
        _image(10 + i, (32 + 4 * (i % 3), 32)).save(image)
        record = [{"text": text}, {"image": str(image)}, {"text": text, "image": str(image)}][i % 3]
        records.append({"id": f"d{i}", **record})
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.slow
def test_index_search_audit_and_every_calibration(llava_next, tmp_path):
    encoder = ms.load_encoder(llava_next)
    corpus = _corpus(tmp_path)
    index, report = ms.build_index(corpus, tmp_path / "index", encoder, calibration="none")
    assert report.indexed == 12 and index.model.extra["family"] == "e5v" and index.model.backend == "VLMEncoder"
    hits = index.search("a dog on the beach", k=5)
    assert len(hits) == 5 and {h.modality for h in index.search("red ball", k=12)} == {"text", "image", "multimodal"}
    # the query went through the query prompt: the same vector as encode_query gives
    query = encoder.encode_query("a dog on the beach")
    assert np.isclose(hits[0].score, float(index.search_vectors(query[None, :], k=1)[0][0].score), atol=1e-5)
    # an image+text document is its joint vector (one prompt, one pass), not a fusion of its parts
    records = [json.loads(line) for line in corpus.read_text().splitlines()]
    pairs = [(r["text"], r["image"]) for r in records if "text" in r and "image" in r]
    joint = encoder.encode_multimodal([t for t, _ in pairs], [i for _, i in pairs])
    raw = index.raw()
    rows = [index.ids.index(r["id"]) for r in records if "text" in r and "image" in r]
    np.testing.assert_allclose(np.asarray(raw["multimodal"])[rows], joint, atol=1e-5)
    d2 = index.ids.index("d2")
    score = float(np.dot(query, joint[0]))
    assert np.isclose([h.score for h in index.search_vectors(query[None, :], k=12)[0] if h.id == "d2"][0], score)
    assert np.abs(np.asarray(raw["text"])[d2]).sum() > 0  # its parts stay: audit probes, the gap
    audit = audit_index(index, n_probes=4, k=3)
    assert audit.probes["n"] == 4 and set(audit.gap["parts"]) == {"text", "image"}
    # every calibration method applies; corpus means include one for joint documents
    fitted_here = index.with_calibration(None)
    assert set(fitted_here.calibrator.counts_) == {"text", "image", "multimodal", "query"}
    texts = [" ".join(np.random.default_rng(i).choice(WORDS, 4)) for i in range(6)]
    images = [str(p) for p in sorted((tmp_path / "img").glob("*.png"))]
    sources = {"query": texts, "text": texts, "image": images, "multimodal": list(zip(texts, images))}
    fitted = fit_calibration(encoder, sources, method="mean")
    for method in METHODS:
        view = index.with_calibration(fitted, method=method)
        assert len(view.search("a child in the snow", k=4)) == 4, method
    # added documents (a new segment) are encoded the same way: an image+text one jointly
    image = str(tmp_path / "img" / "0.png")
    index.add([ms.Document("new-text", text="a blue bike"), ms.Document("new-pair", text="a blue bike", image=image)])
    new_joint = encoder.encode_multimodal(["a blue bike"], [image])[0]
    np.testing.assert_allclose(np.asarray(index.raw()["multimodal"])[index.ids.index("new-pair")], new_joint, atol=1e-5)
    assert np.abs(np.asarray(index.raw()["multimodal"])[index.ids.index("new-text")]).sum() == 0
    with pytest.raises(ms.CalibrationError, match="multimodal"):  # joint documents need their own mean
        index.with_calibration(fit_calibration(encoder, {"query": texts, "text": texts, "image": images}))


# -- cost per item (bench/cost.py) -----------------------------------------------------------


class _Linear(Encoder):
    """Two linear towers: text 8 -> 4 (one-hot of the length), image 12 -> 4 (pixel means): FLOPs by hand."""

    name, fingerprint, dim, max_length = "linear", "0" * 16, 4, 64
    modalities = frozenset({"text", "image"})

    def __init__(self) -> None:
        import torch

        torch.manual_seed(0)
        self.model = torch.nn.ModuleDict({"text_model": torch.nn.Linear(8, 4), "vision_model": torch.nn.Linear(12, 4)})

    def _encode_batch(self, batch, modality):
        import torch

        if modality == "text":
            x = torch.nn.functional.one_hot(torch.tensor([len(t) % 8 for t in batch]), 8).float()
        else:
            x = torch.tensor(np.stack([np.asarray(im, np.float32).mean(axis=(0, 1)).repeat(4) for im in batch]))
        tower = self.model["text_model" if modality == "text" else "vision_model"]
        with torch.inference_mode():
            return tower(x).numpy(), [False] * len(batch)


def test_flops_and_parameters_by_hand():
    cost = model_cost(_Linear(), timed_items=2, min_seconds=0.0)
    # a linear layer on one row: 2 FLOPs per multiply-add, in x out of them
    assert cost["flops"] == {"text": 2 * 8 * 4, "image": 2 * 12 * 4, "multimodal": 2 * 8 * 4 + 2 * 12 * 4}
    assert cost["parameters"] == {"total": 36 + 52, "image": 12 * 4 + 4, "text": 8 * 4 + 4}
    assert set(cost["items_per_s"]) == {"text", "image", "multimodal"} and min(cost["items_per_s"].values()) > 0
    assert "224x224" in cost["inputs"]["image"] and "two passes" in cost["inputs"]["multimodal"]
    table = "\n".join(cost_table({"linear": {"cost": cost}}))
    assert "| `linear` | 8.8e-05 |" in table and "GFLOPs image+text" in table


@pytest.mark.slow
def test_vlm_cost_is_one_joint_pass(llava_next):
    cost = model_cost(ms.load_encoder(llava_next), timed_items=2, min_seconds=0.0)
    flops = cost["flops"]
    # the joint prompt reads the image's tokens and the caption's: more than either alone, one pass
    assert (
        flops["multimodal"] > max(flops["text"], flops["image"]) and "one forward pass" in cost["inputs"]["multimodal"]
    )
    assert {"image", "decoder", "unused"} <= set(cost["parameters"])  # vision tower, LLM, its unused head


@pytest.mark.slow
def test_bench_reports_cost_per_model(tiny_clip, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "caps"
    (folder / "images").mkdir(parents=True)
    for split, n in (("dev", 6), ("train", 4)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                _image(50 + i).save(folder / "images" / f"{split}{i}.png")
                caps = [" ".join(rng.choice(WORDS, 5)) for _ in range(2)]
                f.write(json.dumps({"image": f"images/{split}{i}.png", "captions": caps}) + "\n")
    config = B.BenchConfig(settings=(3,), progress=False, max_calibration=20)
    B.bench(folder, [str(tiny_clip)], tmp_path / "out", config=config)
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    cost = next(iter(data["runs"][0]["models"].values()))["cost"]
    assert set(cost) >= {"parameters", "flops", "inputs", "items_per_s"}
    assert cost["flops"]["image"] > 0 and cost["flops"]["multimodal"] == cost["flops"]["text"] + cost["flops"]["image"]
    assert {"text", "image"} <= set(cost["parameters"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "### Cost per item" in report and "GFLOPs text" in report
