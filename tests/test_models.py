"""Every model family and modality mixsearch names, tried as a new user would: a tiny randomly
initialised checkpoint saved with its real tokenizer and processor classes, a 20-document corpus
indexed, searched by text and by its other modality. Each row either works or is refused with a
message that says what is wrong and what to do (issue 12's table, rerun).

| family                                   | test                                              |
|------------------------------------------|---------------------------------------------------|
| CLIP, ChineseCLIP, VisionTextDualEncoder | test_image_text_family_indexes_and_searches       |
| SigLIP (Gemma and SentencePiece), SigLIP2 | same; SigLIP2 NaFlex: test_siglip2_naflex_...     |
| BLIP retrieval                           | same; test_blip_retrieval_loads_its_own_weights   |
| BLIP weights under another class         | test_checkpoint_missing_weights_is_refused        |
| ALIGN (matched / mismatched widths)      | same family test / test_align_with_unequal_...    |
| CLAP (audio + text)                      | test_clap_indexes_and_searches_audio              |
| X-CLIP (video + text), video via frames  | test_video_families_index_and_search              |
| a missing tokenizer library              | test_missing_sentencepiece_is_named               |
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_clip, requires_shared, sentence, write_image
from tiny_models import (
    make_align,
    make_blip_retrieval,
    make_chinese_clip,
    make_clap,
    make_siglip2,
    make_siglip_gemma,
    make_siglip_sentencepiece,
    make_vision_text_dual_encoder,
    make_xclip,
)

import mixsearch as ms
from mixsearch.types import Document

IMAGE_TEXT = {
    "clip": make_tiny_clip,
    "chinese_clip": make_chinese_clip,
    "vision_text_dual_encoder": make_vision_text_dual_encoder,
    "siglip_gemma": make_siglip_gemma,
    "siglip_sentencepiece": make_siglip_sentencepiece,
    "siglip2": make_siglip2,
    "blip_retrieval": make_blip_retrieval,
    "align": lambda folder: make_align(folder, vision_dim=16),
}
CLASSES = {
    "clip": "CLIPModel",
    "chinese_clip": "ChineseCLIPModel",
    "vision_text_dual_encoder": "VisionTextDualEncoderModel",
    "siglip_gemma": "SiglipModel",
    "siglip_sentencepiece": "SiglipModel",
    "siglip2": "Siglip2Model",
    "blip_retrieval": "BlipForImageTextRetrieval",
    "align": "AlignModel",
}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Each family's tiny checkpoint, built once per session on first use."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            makers = {**IMAGE_TEXT, "clap": make_clap, "clap_fused": lambda f: make_clap(f, fused=True)}
            makers["xclip"] = make_xclip
            built[family] = makers[family](tmp_path_factory.mktemp(family))
        return built[family]

    return get


def image_text_corpus(folder: Path) -> Path:
    """20 documents: 7 text, 7 image (sizes and aspect ratios vary), 6 image+text."""
    rng = np.random.default_rng(5)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = [{"id": f"t{i}", "text": sentence(rng)} for i in range(7)]
    for i in range(7):
        from PIL import Image

        size = (40 + 9 * i, 30 + 5 * (i % 3))
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / "img" / f"i{i}.png")
        lines.append({"id": f"i{i}", "image": f"img/i{i}.png"})
    for i in range(6):
        write_image(folder / "img" / f"m{i}.png", 30 + i)
        lines.append({"id": f"m{i}", "text": sentence(rng), "image": f"img/m{i}.png"})
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


@pytest.mark.parametrize("family", list(IMAGE_TEXT))
def test_image_text_family_indexes_and_searches(family, checkpoints, tmp_path):
    folder = checkpoints(family)
    encoder = ms.load_encoder(str(folder))
    assert type(encoder.model).__name__ == CLASSES[family]
    assert encoder.modalities == {"text", "image", "video"}
    corpus = image_text_corpus(tmp_path)
    idx, report = ms.build_index(corpus, tmp_path / "idx", encoder, progress=False)
    assert len(idx) == 20 and report.skipped == 0, report.summary()
    assert idx.manifest.documents.multimodal == 6
    text = json.loads(corpus.read_text().splitlines()[2])["text"]
    hits = idx.search(text, k=5)
    assert len(hits) == 5 and hits[0].id == "t2"  # its own text, calibrated by the same mean
    hits = idx.search(image=tmp_path / "img" / "i3.png", k=5)
    assert hits[0].id == "i3" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert len(idx.search("a dog", image=tmp_path / "img" / "m1.png", k=3)) == 3
    # a second load embeds the same: every weight came from the checkpoint
    again = ms.load_encoder(str(folder))
    assert again.fingerprint == encoder.fingerprint
    np.testing.assert_allclose(again.encode([text]), encoder.encode([text]), atol=1e-6)


def test_siglip_scores_are_cosines(checkpoints):
    """SigLIP's sigmoid scale and bias are a monotone map of the cosine: ranking by cosine on
    normalised embeddings is the same ranking, so scores stay cosines."""
    encoder = ms.load_encoder(str(checkpoints("siglip_sentencepiece")))
    t = encoder.encode(["a dog", "a red ball"])
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    scale, bias = encoder.model.logit_scale.detach().exp().item(), encoder.model.logit_bias.detach().item()
    cos = t @ t.T
    assert np.array_equal(np.argsort(-cos, axis=1), np.argsort(-(1 / (1 + np.exp(-(scale * cos + bias)))), axis=1))


def test_siglip2_naflex_gets_every_processor_output_and_stays_on_pytorch(checkpoints, monkeypatch):
    from PIL import Image

    encoder = ms.load_encoder(str(checkpoints("siglip2")))
    seen = {}
    tower = encoder._towers["image"]

    @functools.wraps(tower)  # the same signature: the encoder passes what the tower takes
    def spy(**inputs):
        seen.update(inputs)
        return tower(**inputs)

    monkeypatch.setitem(encoder._towers, "image", spy)
    wide, tall = Image.new("RGB", (120, 30), (200, 10, 10)), Image.new("RGB", (30, 120), (10, 10, 200))
    vectors = encoder.encode([wide, tall], "image")
    assert set(seen) == {"pixel_values", "pixel_attention_mask", "spatial_shapes"}
    assert seen["spatial_shapes"][0].tolist() != seen["spatial_shapes"][1].tolist()  # aspect ratios kept
    assert vectors.shape == (2, encoder.dim) and not np.allclose(vectors[0], vectors[1])
    encoder.expect(100_000, "image")  # a long run would switch to ONNX Runtime: not this model
    assert encoder.runtime == "torch"
    with pytest.raises(ms.UsageError, match="runs only on PyTorch"):
        ms.load_encoder(str(checkpoints("siglip2")), runtime="onnx")


def test_blip_retrieval_loads_its_own_weights(checkpoints):
    """The issue's silent failure: BLIP's retrieval checkpoint loaded as BlipModel re-randomised its
    text tower on every load (cosine -0.005 between two loads). Now both loads agree exactly."""
    folder = checkpoints("blip_retrieval")
    a, b = ms.load_encoder(str(folder)), ms.load_encoder(str(folder))
    texts = ["a dog runs on the beach", "a red ball"]
    cos = (a.encode(texts) * b.encode(texts)).sum(1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-6)


def test_checkpoint_missing_weights_is_refused(checkpoints, tmp_path):
    import shutil

    folder = tmp_path / "blip-as-blipmodel"
    shutil.copytree(checkpoints("blip_retrieval"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BlipModel"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ms.ModelError) as err:
        ms.load_encoder(str(folder))
    message = str(err.value)
    assert "does not load whole as BlipModel" in message and "text_model (" in message
    assert "text_projection" in message and "weights are those of BlipForImageTextRetrieval" in message

    # a CLIP checkpoint with a tensor cut out: refused, naming it
    from safetensors.torch import load_file, save_file

    clip = tmp_path / "clip-cut"
    shutil.copytree(checkpoints("clip"), clip)
    weights = load_file(clip / "model.safetensors")
    del weights["text_projection.weight"]
    save_file(weights, clip / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ms.ModelError, match=r"missing from the checkpoint: text_projection\b"):
        ms.load_encoder(str(clip))


def test_align_with_unequal_widths_is_refused(tmp_path):
    folder = make_align(tmp_path / "align", projection_dim=16, vision_dim=24)
    with pytest.raises(ms.ModelError, match=r"different widths \(text 16, image \d+ dimensions\)"):
        ms.load_encoder(str(folder))


@pytest.mark.slow
def test_missing_sentencepiece_is_named(checkpoints, tmp_path):
    """Without the SentencePiece library a SigLIP tokenizer cannot load: the command says so in
    one line (exit 1), no traceback."""
    folder = checkpoints("siglip_sentencepiece")
    corpus = image_text_corpus(tmp_path)
    code = (
        "import sys; sys.modules['sentencepiece'] = None; "
        "from mixsearch.cli import app; sys.argv = ['mixsearch'] + sys.argv[1:]; app()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "index", str(corpus), "--model", str(folder), "--out", str(tmp_path / "i")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stderr
    assert "error:" in out.stderr and "SentencePiece" in out.stderr and "Traceback" not in out.stderr


# -- audio ------------------------------------------------------------------------------------------


def write_tone(path: Path, seconds: float, freq: float, rate: int = 44100, channels: int = 1) -> Path:
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    soundfile.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)
    return path


def audio_corpus(folder: Path) -> Path:
    """20 documents: 7 text, 7 audio (wav, flac, ogg; 16-44.1 kHz; mono and stereo; some longer
    than the tiny CLAP's 2-second window), 6 audio+text; and 2 images the model cannot encode."""
    rng = np.random.default_rng(7)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    lines = [{"id": f"t{i}", "text": sentence(rng)} for i in range(7)]
    suffixes = [".wav", ".flac", ".ogg"]
    for i in range(13):
        name = f"a{i}{suffixes[i % 3]}"
        write_tone(
            folder / "clips" / name, 0.7 + 0.4 * i, 220 * (1 + i), rate=(16000, 22050, 44100)[i % 3], channels=1 + i % 2
        )
        if i < 7:
            lines.append({"id": f"a{i}", "audio": f"clips/{name}"})
        else:
            lines.append({"id": f"at{i}", "text": sentence(rng), "audio": f"clips/{name}"})
    (folder / "img").mkdir(exist_ok=True)
    for i in range(2):
        write_image(folder / "img" / f"p{i}.png", i)
        lines.append({"id": f"p{i}", "image": f"img/p{i}.png"})
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


@pytest.mark.parametrize("family", ["clap", "clap_fused"])
def test_clap_indexes_and_searches_audio(family, checkpoints, tmp_path):
    encoder = ms.load_encoder(str(checkpoints(family)))
    assert type(encoder.model).__name__ == "ClapModel" and encoder.modalities == {"text", "audio"}
    corpus = audio_corpus(tmp_path)
    idx, report = ms.build_index(corpus, tmp_path / "idx", encoder, progress=False)
    assert len(idx) == 20
    # the build summary counts the images this model cannot encode as skipped
    assert report.skipped == 2 and "2 documents skipped" in report.summary()
    assert "cannot encode image; skipped" in report.summary()
    assert idx.manifest.documents.audio == 7 and idx.calibrator.counts_["audio"] == 13
    hits = idx.search(audio=tmp_path / "clips" / "a4.flac", k=5)
    assert hits[0].id == "a4" and hits[0].score == pytest.approx(1.0, abs=1e-4) and hits[0].audio
    assert len(idx.search("a dog barks", k=20)) == 20
    assert len(idx.search("a dog barks", audio=tmp_path / "clips" / "a0.wav", k=3)) == 3
    with pytest.raises(ms.ModelError, match="no image tower"):
        idx.search(image=tmp_path / "img" / "p0.png")


def test_clap_long_clips_encode_the_same_every_time(checkpoints, tmp_path):
    """A clip longer than the window is cropped (rand_trunc) or fused from random crops (fusion):
    seeded per clip, so it encodes the same alone, in any batch, on any run."""
    long = write_tone(tmp_path / "long.wav", 7.5, 330)
    short = write_tone(tmp_path / "short.wav", 0.5, 660)
    for family in ("clap", "clap_fused"):
        encoder = ms.load_encoder(str(checkpoints(family)))
        alone = encoder.encode([long], "audio")
        batch = encoder.encode([short, long, short], "audio")
        np.testing.assert_allclose(alone[0], batch[1], atol=1e-5)
        np.testing.assert_allclose(batch[0], batch[2], atol=1e-5)


def test_audio_loader_errors_name_the_file(tmp_path):
    from mixsearch.ingest.audio import load_audio

    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(ms.InputError, match="bad.wav: unreadable audio"):
        load_audio(tmp_path / "bad.wav")
    with pytest.raises(ms.InputError, match="nowhere.flac: audio file not found"):
        load_audio(tmp_path / "nowhere.flac")
    clip = load_audio(write_tone(tmp_path / "st.flac", 1.0, 440, rate=22050, channels=2))
    assert clip.rate == 22050 and clip.samples.ndim == 1 and len(clip.at_rate(48000)) == 48000


def test_clotho_clips_end_to_end_from_the_cli(checkpoints, tmp_path):
    """The real Clotho clips (44.1 kHz wav) with their captions: index audio, text and audio+text
    documents with a tiny CLAP from the command line; search by text and by a clip."""
    from typer.testing import CliRunner

    from mixsearch.cli import app

    clotho = requires_shared("clotho_mini")
    entries = json.loads((clotho / "captions_7clips.json").read_text())
    lines = []
    for i, entry in enumerate(entries):
        clip = str(clotho / "audio" / entry["file"])
        lines.append({"id": f"clip{i}", "audio": clip})
        lines.append({"id": f"cap{i}", "text": entry["captions"][0]})
        lines.append({"id": f"both{i}", "text": entry["captions"][1], "audio": clip})
    corpus = tmp_path / "clotho.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in lines))
    runner = CliRunner()
    model = str(checkpoints("clap"))
    out = runner.invoke(app, ["index", str(corpus), "--model", model, "--out", str(tmp_path / "idx")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["search", str(tmp_path / "idx"), "a small dog snoring", "-k", "3", "--json"])
    assert out.exit_code == 0 and len(out.output.splitlines()) == 3
    first = str(clotho / "audio" / entries[2]["file"])
    out = runner.invoke(app, ["search", str(tmp_path / "idx"), first, "-k", "1", "--json", "--modality", "audio"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["id"] == "clip2"  # the clip itself
    out = runner.invoke(app, ["search", str(tmp_path / "idx"), "--audio", first, "--text", "a lift", "-k", "2"])
    assert out.exit_code == 0 and len(out.output.splitlines()) == 2
    out = runner.invoke(app, ["search", str(tmp_path / "idx"), "--audio", str(tmp_path / "none.wav")])
    assert out.exit_code == 2 and "no such audio file" in out.output


def test_bench_replaces_text_by_audio(checkpoints, tmp_path):
    """The paper's Figure 5 (text-audio): setting 1 with --replace audio on a captions dataset
    whose lines pair captions with a clip."""
    from mixsearch import bench as B

    clotho = requires_shared("clotho_mini")
    entries = json.loads((clotho / "captions_7clips.json").read_text())
    data = tmp_path / "clotho"
    data.mkdir()
    with (data / "dev.jsonl").open("w") as f:
        for e in entries:
            f.write(json.dumps({"audio": str(clotho / "audio" / e["file"]), "captions": e["captions"]}) + "\n")
    cfg = B.BenchConfig(settings=(1, 3), p_grid=(0.0, 0.5, 1.0), replace="audio", depth=10, progress=False)
    result, _ = B.bench(data, [str(checkpoints("clap"))], tmp_path / "out", calibrate_on="test", config=cfg)
    run = result["runs"][0]
    s1 = [r for r in run["rows"] if r["setting"] == 1 and r["variant"] == "plain"]
    assert {r["p"] for r in s1} == {0.0, 0.5, 1.0} and all(r["queries"] == 7 for r in s1)
    assert next(r for r in s1 if r["p"] == 1.0)["corpus"] == {"audio": 7}
    s3 = next(r for r in run["rows"] if r["setting"] == 3)
    assert s3["corpus"] == {"text": 2, "audio": 2, "multimodal": 3} and "audio+text" in s3["corpus_rule"]
    assert next(iter(run["models"].values()))["calibration"]["counts"]["audio"] == 7


# -- video ------------------------------------------------------------------------------------------


def write_video(path: Path, seed: int, frames: int = 12, fps: int = 6, size=(48, 32)) -> Path:
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = np.roll(base, 3 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def video_corpus(folder: Path) -> Path:
    rng = np.random.default_rng(9)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    lines = [{"id": f"t{i}", "text": sentence(rng)} for i in range(7)]
    for i in range(13):
        suffix = (".mp4", ".mkv", ".mov")[i % 3]
        write_video(folder / "clips" / f"v{i}{suffix}", i, frames=3 + 2 * i)
        record = {"id": f"v{i}", "video": f"clips/v{i}{suffix}"}
        if i >= 7:
            record["text"] = sentence(rng)
        lines.append(record)
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


@pytest.mark.parametrize("family", ["clip", "xclip"])
def test_video_families_index_and_search(family, checkpoints, tmp_path):
    """X-CLIP's own video tower, and any image model frame by frame (mean-pooled): index and
    search from the command line, by text and by a video."""
    from typer.testing import CliRunner

    from mixsearch.cli import app

    corpus = video_corpus(tmp_path)
    runner = CliRunner()
    args = ["index", str(corpus), "--model", str(checkpoints(family)), "--out", str(tmp_path / "idx")]
    out = runner.invoke(app, args + (["--video-frames", "5"] if family == "clip" else []))
    assert out.exit_code == 0, out.output
    idx = ms.open_index(tmp_path / "idx")
    assert len(idx) == 20 and idx.manifest.documents.video == 7
    assert idx.model.video_frames == (5 if family == "clip" else 4)
    assert idx.calibrator.counts_["video"] == 13
    out = runner.invoke(app, ["search", str(tmp_path / "idx"), "a dog runs", "-k", "4", "--json"])
    assert out.exit_code == 0 and len(out.output.splitlines()) == 4
    out = runner.invoke(app, ["search", str(tmp_path / "idx"), str(tmp_path / "clips" / "v2.mov"), "-k", "1", "--json"])
    assert out.exit_code == 0, out.output
    hit = json.loads(out.output)
    assert hit["id"] == "v2" and hit["score"] == pytest.approx(1.0, abs=1e-4) and hit["video"].endswith("v2.mov")
    out = runner.invoke(app, ["search", str(tmp_path / "idx"), "--video", str(tmp_path / "clips" / "v9.mp4"), "a dog"])
    assert out.exit_code == 0, out.output


def test_xclip_takes_its_own_frame_count(checkpoints):
    with pytest.raises(ms.UsageError, match="takes exactly 4 frames per video"):
        ms.load_encoder(str(checkpoints("xclip")), video_frames=8)


def test_video_frames_are_sampled_uniformly(tmp_path):
    from mixsearch.ingest.video import load_video

    path = write_video(tmp_path / "v.mp4", 0, frames=20, fps=10)
    video = load_video(path, 4)
    assert len(video.frames) == 4 and video.times == pytest.approx(
        [0.3, 0.8, 1.3, 1.8], abs=0.01
    )  # first frame at or after 1/8, 3/8, ...

    assert len(load_video(path, 30).frames) == 30  # fewer frames than asked: some repeat
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(ms.InputError, match="bad.mp4: unreadable video"):
        load_video(tmp_path / "bad.mp4")


def test_bench_replaces_text_by_video(checkpoints, tmp_path):
    from mixsearch import bench as B

    data = tmp_path / "videos"
    data.mkdir()
    rng = np.random.default_rng(3)
    with (data / "dev.jsonl").open("w") as f:
        for i in range(6):
            write_video(data / f"c{i}.mp4", i, frames=4)
            f.write(json.dumps({"video": f"c{i}.mp4", "captions": [sentence(rng) for _ in range(3)]}) + "\n")
    cfg = B.BenchConfig(settings=(1, 2), p_grid=(0.0, 1.0), alpha_grid=(0.5,), replace="video", progress=False)
    result, _ = B.bench(data, [str(checkpoints("xclip"))], tmp_path / "out", calibrate_on="test", config=cfg)
    rows = result["runs"][0]["rows"]
    assert next(r for r in rows if r["setting"] == 1 and r["p"] == 1.0)["corpus"] == {"video": 6}
    assert next(r for r in rows if r["setting"] == 2)["corpus"] == {"multimodal": 6}


def test_documents_of_a_modality_the_model_lacks_are_counted_as_skipped(tiny_clip, tmp_path):
    corpus = audio_corpus(tmp_path)
    _, report = ms.build_index(corpus, tmp_path / "idx", str(tiny_clip), progress=False)
    assert report.skipped == 13 and report.indexed == 9
    assert "13 documents skipped" in report.summary() and "cannot encode audio; skipped" in report.summary()


def test_loading_refusals_are_clear(tmp_path):
    with pytest.raises(ms.ModelError, match="CUDA is not available"):
        if __import__("torch").cuda.is_available():
            pytest.skip("this machine has CUDA")
        ms.load_encoder(str(make_tiny_clip(tmp_path / "c")), device="cuda")
    with pytest.raises(ms.UsageError, match="encode no video"):
        ms.load_encoder("all-MiniLM-L6-v2", video_frames=4)


def test_search_api_takes_audio_and_video(checkpoints, tmp_path):
    idx, _ = ms.build_index(
        [Document("t", text="a dog"), Document("v", video=write_video(tmp_path / "v.mp4", 1))],
        tmp_path / "idx",
        str(checkpoints("xclip")),
        calibration="none",  # one video: a mean fitted on it would cancel it
        progress=False,
    )
    with pytest.raises(ms.UsageError, match="one kind of media per query"):
        idx.search(image=tmp_path / "v.mp4", video=tmp_path / "v.mp4")
    with pytest.raises(ms.UsageError, match="come in pairs"):
        idx.search_batch(["a", "b"], videos=[tmp_path / "v.mp4"])
    results = idx.search([ms.Query(video=tmp_path / "v.mp4")] * 2, k=1)
    assert results.ids() == [["v"], ["v"]]
