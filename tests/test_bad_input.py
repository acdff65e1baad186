"""Hostile-but-fair input (issue 8): each bad item becomes a reported, skipped document naming its
file, line and document, and everything else is read, encoded and indexed as usual. Every bad
file is written here, under tmp_path."""

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from mixsearch import InputError, build_index, load_encoder, read_corpus
from mixsearch.embedding import content_key, embed
from mixsearch.ingest import load_image, load_media, read_items
from mixsearch.ingest import media as media_module


def read(path):
    problems = []
    docs = list(read_corpus(path, problems.append))
    return docs, problems


def printable(problems):
    """Every problem can be printed to a UTF-8 terminal (no surrogate escapes) and says where."""
    text = "\n".join(map(str, problems))
    text.encode("utf-8")
    return text


def write_blank_png(path: Path, width: int, height: int, level: int = 9) -> Path:
    """A valid all-black greyscale PNG of any size, written row by row: tiny on disk, huge decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(level)
    row = bytes(width + 1)  # the filter byte, then one byte per pixel
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """30000×30000 pixels (900 MB decoded) in under 1 MB: past Pillow's own DecompressionBombError."""
    return write_blank_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 30000, 30000)


# --- JSON Lines -------------------------------------------------------------------------------


def test_line_with_bytes_that_are_not_utf8_is_skipped_and_reading_goes_on(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "a", "text": "one"}\n{"id": "b", "text": "caf\xe9"}\n{"id": "c", "text": "three"}\n')
    docs, problems = read(path)
    assert [d.id for d in docs] == ["a", "c"]
    assert len(problems) == 1 and problems[0].skipped
    # byte 25 of line 2; line 1 is 27 bytes with its newline, so offset 27 + 24 = 51 in the file
    assert str(problems[0]) == (
        f"{path}:2: not valid UTF-8 (byte 0xe9 at byte 25 of the line, offset 51 in the file); line skipped"
    )
    assert path.read_bytes()[51] == 0xE9


def test_byte_order_mark_keeps_line_one(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "one"}\r\n{"id": "b", "text": "two"}\r\n')
    docs, problems = read(path)
    assert [d.id for d in docs] == ["a", "b"] and problems == []
    # files joined with cat carry a mark mid-file too; lines may end in \r alone
    path.write_bytes(b'{"id": "a", "text": "one"}\r\xef\xbb\xbf{"id": "b", "text": "two"}\r\n\xff\n')
    docs, problems = read(path)
    assert [d.id for d in docs] == ["a", "b"] and [p.where for p in problems] == [f"{path}:3"]


def test_files_that_are_not_utf8_text_are_refused_whole(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "one"}\n', encoding="utf-16")
    with pytest.raises(InputError, match="UTF-16 text; save it as UTF-8"):
        read(path)
    image = write_image(tmp_path / "photo.png", 0)  # given as the corpus by mistake
    with pytest.raises(InputError, match="photo.png: not a text file"):
        read(image)
    with pytest.raises(InputError, match="photo.png: not a text file"):
        list(read_items(image, "text"))
    with pytest.raises(InputError, match="null: a corpus is a JSON Lines file or a folder"):
        read(Path("/dev/null"))


@pytest.mark.parametrize(
    "raw_id, says",
    [
        ("true", "not a boolean (true)"),
        ('["a"]', "not a list"),
        ('{"a": 1}', "not an object"),
        ("1.5", "not a decimal number (1.5)"),
        ("NaN", "not a decimal number (NaN)"),
        ("null", "not null"),
        ('""', "'id' is empty"),
        ('"a\\ud800b"', "'id' is not valid Unicode at character 1"),
        ('"a\\nb"', "control character U+000A at character 1"),
        ('"a\\tb"', "control character U+0009"),
        ('"a\\u0000b"', "control character U+0000"),
        ('"a\\u0085b"', "control character U+0085"),  # C1: NEXT LINE
        ('"a\\u001bb"', "control character U+001B"),  # ESC: terminal escape sequences
    ],
)
def test_bad_ids_are_reported_and_skipped(tmp_path, raw_id, says):
    path = tmp_path / "c.jsonl"
    path.write_text(f'{{"id": {raw_id}, "text": "bad"}}\n{{"id": "ok", "text": "fine"}}\n')
    docs, problems = read(path)
    assert [d.id for d in docs] == ["ok"]
    assert len(problems) == 1 and problems[0].where == f"{path}:1" and problems[0].skipped
    assert says in problems[0].message, problems[0].message
    printable(problems)


def test_integer_and_string_ids_are_one_id(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": 17, "text": "int"}\n{"id": "17", "text": "str"}\n{"id": 17, "text": "again"}\n')
    docs, problems = read(path)
    assert [(d.id, d.text) for d in docs] == [("17", "int")]
    assert str(problems[0]) == (
        f"{path}:2 (document '17'): duplicate id: the string \"17\" and the integer 17 at {path}:1 "
        "are the same id once read; later document skipped"
    )
    assert str(problems[1]).startswith(f"{path}:3 (document '17'): duplicate id (first seen at {path}:1)")


def test_unparseable_json_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "c.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    huge = "1" * 5000  # past Python's limit on integer digits
    path.write_text(f'{deep}\n{{"id": {huge}, "text": "x"}}\n{{"id": "ok", "text": "y"}}\n')
    docs, problems = read(path)
    assert [d.id for d in docs] == ["ok"]
    assert "nested too deeply" in problems[0].message and "not valid JSON" in problems[1].message


def test_bad_media_paths_are_problems_when_read(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [
        {"id": "nul", "image": "img/a\u0000.png"},
        {"id": "surrogate", "image": "img/\ud800.png"},
        {"id": "ok", "text": "fine"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines) + '\n{"id": "x", "text": "y", "\\ud800": 1}\n')
    docs, problems = read(path)
    assert [d.id for d in docs] == ["ok", "x"]
    text = printable(problems)
    assert f"{path}:1 (document 'nul'): 'image' path contains a NUL character" in text
    assert f"{path}:2 (document 'surrogate'): 'image' path is not valid Unicode" in text
    assert "unknown field(s) '\\ud800' ignored" in text and not problems[2].skipped


def test_media_paths_are_absolute_from_any_working_directory(tmp_path, monkeypatch):
    (tmp_path / "data" / "img").mkdir(parents=True)
    write_image(tmp_path / "data" / "img" / "a.png", 0)
    os.symlink(tmp_path / "data" / "img", tmp_path / "data" / "link")
    lines = ['{"id": "a", "image": "img/a.png"}', '{"id": "b", "image": "link/a.png"}']
    (tmp_path / "data" / "c.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    docs, _ = read(Path("data/c.jsonl"))
    assert [d.image for d in docs] == [tmp_path / "data" / "img" / "a.png", tmp_path / "data" / "link" / "a.png"]
    monkeypatch.chdir(tmp_path / "data" / "img")
    assert all(d.image.is_absolute() and d.image.is_file() for d in docs)  # symlink kept as named
    assert list(read_items(Path("../c.jsonl"), "image")) == [d.image for d in docs]


# --- folders --------------------------------------------------------------------------------


def test_folder_file_names_that_are_not_utf8(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "fine.txt").write_text("hello")
    with open(os.fsencode(folder) + b"/caf\xe9.txt", "w") as f:  # Latin-1 é: not UTF-8
        f.write("bonjour")
    os.mkdir(os.fsencode(folder) + b"/dossi\xe9r")
    with open(os.fsencode(folder) + b"/dossi\xe9r/x.txt", "w") as f:
        f.write("inside")
    (folder / "new\nline.txt").write_text("a name with a line break")
    docs, problems = read(folder)
    assert [d.id for d in docs] == ["fine.txt"]
    text = printable(problems)
    assert f"{folder}/caf\\xe9.txt: file name is not valid UTF-8" in text
    assert f"{folder}/dossi\\xe9r: folder name is not valid UTF-8" in text
    assert "file name contains the control character U+000A" in text
    assert all(p.skipped for p in problems)


def test_folder_symlinks_outside_are_skipped_inside_are_fine(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not index me")
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello")
    (folder / ".hidden.txt").write_text("hidden")
    write_image(folder / "sub" / "p.png", 0)
    os.symlink(outside / "secret.txt", folder / "leak.txt")
    os.symlink(outside, folder / "leakdir")
    os.symlink(folder / "a.txt", folder / "alias.txt")  # inside: fine
    os.symlink("../sub", folder / "sub" / "loop")  # inside, and a loop if it were followed
    os.symlink(folder / "nowhere.txt", folder / "broken.txt")
    os.mkfifo(folder / "pipe.txt")  # reading it would block for ever
    docs, problems = read(folder)
    assert [d.id for d in docs] == ["a.txt", "alias.txt", "sub/p.png"]
    assert docs[2].image == folder / "sub" / "p.png" and docs[2].image.is_absolute()
    skipped = {Path(p.where).name: p.message for p in problems if p.skipped}
    assert skipped == {
        "leak.txt": "symlink leading outside the corpus folder; skipped",
        "leakdir": "symlink leading outside the corpus folder; skipped",
        "broken.txt": "broken symlink (what it names does not exist); skipped",
        "pipe.txt": "not a regular file; skipped",
    }
    notes = [p for p in problems if not p.skipped]
    assert [Path(p.where).name for p in notes] == ["loop"]
    # calibration items from a folder are read the same way
    problems = []
    assert list(read_items(folder, "image", problems.append)) == [folder / "sub" / "p.png"]
    assert "leakdir" in printable(problems)


# --- calibration item lists --------------------------------------------------------------------


def test_calibration_items_bad_bytes_and_bom(tmp_path):
    path = tmp_path / "q.txt"
    path.write_bytes(b"\xef\xbb\xbfone\n\xc3(two\nthree\n")
    problems = []
    assert list(read_items(path, "text", problems.append)) == ["one", "three"]
    assert str(problems[0]).startswith(f"{path}:2: not valid UTF-8 (byte 0xc3 at byte 1 of the line")
    jsonl = tmp_path / "i.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"image": "a.png"}\n{"image": "b\\u0000.png"}\n{"image": "\xff.png"}\n[1]\n')
    problems = []
    assert list(read_items(jsonl, "image", problems.append)) == [tmp_path / "a.png"]
    assert [p.where for p in problems] == [f"{jsonl}:2", f"{jsonl}:3", f"{jsonl}:4"]
    assert "NUL character" in problems[0].message and "not valid UTF-8" in problems[1].message


# --- images -------------------------------------------------------------------------------------


def test_long_thin_image_is_refused_before_decoding(tmp_path):
    from PIL import Image

    path = tmp_path / "strip.png"
    Image.new("RGB", (1, 6000)).save(path)  # about 100 bytes; 3.4 GB once a CLIP processor scales it
    with pytest.raises(InputError, match=r"strip.png: image is 1×6000, an aspect ratio of 6000:1, above the limit"):
        load_image(path)
    with pytest.raises(InputError, match="aspect ratio of 6000:1"):
        load_media("image", Image.new("RGB", (1, 6000)))  # a query image given in memory
    Image.new("RGB", (2000, 100)).save(tmp_path / "banner.png")  # 20:1 is still fine
    assert load_image(tmp_path / "banner.png").size == (2000, 100)


def test_image_size_limits(tmp_path, bomb, monkeypatch):
    with pytest.raises(InputError, match=r"bomb.png: image is 900.0 megapixels, above the limit of 64 megapixels"):
        load_image(bomb)  # past Pillow's DecompressionBombError, which is not an OSError
    big = write_blank_png(tmp_path / "big.png", 10000, 10000)  # Pillow only warns: an error here
    with pytest.raises(InputError, match="image is 100.0 megapixels"):
        load_image(big)
    large = write_blank_png(tmp_path / "large.png", 8500, 8000)  # Pillow is silent; our limit is not
    with pytest.raises(InputError, match=r"image is 8500×8000 = 68.0 megapixels, above the limit of 64"):
        load_image(large)
    monkeypatch.setattr(media_module, "MAX_IMAGE_PIXELS", 100_000_000)  # the limit is a setting
    assert load_image(large).size == (8500, 8000)


def test_special_files_are_refused_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    for path in (tmp_path / "pipe.png", "/dev/zero"):
        with pytest.raises(InputError, match="not a regular file"):
            load_image(path)
        with pytest.raises(InputError, match="not a regular file"):
            content_key("image", path)
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


def test_content_key_names_the_item(tmp_path):
    with pytest.raises(InputError, match="NUL character"):
        content_key("image", str(tmp_path / "a\x00.png"))
    with pytest.raises(InputError, match="nowhere.png: image file not found"):
        content_key("image", tmp_path / "nowhere.png")
    with pytest.raises(InputError, match="text is not valid Unicode at character 1"):
        content_key("text", "a\ud800")


# --- encoding and building ---------------------------------------------------------------------


def test_identical_items_are_encoded_once(tiny_clip, tmp_path):
    enc = load_encoder(str(tiny_clip))
    a = write_image(tmp_path / "a.png", 0)
    copy = tmp_path / "copy.png"
    copy.write_bytes(a.read_bytes())
    b = write_image(tmp_path / "b.png", 1)
    seen = []
    real = enc._encode_batch

    def counting(batch, modality):
        seen.extend(batch)
        return real(batch, modality)

    enc._encode_batch = counting
    problems = []
    items = [str(a), str(b), str(copy), str(a), str(tmp_path / "gone.png"), str(tmp_path / "gone.png")]
    out = embed(enc, items, "image", report=problems.append)
    assert len(seen) == 2 and out.encoded == 2 and out.from_cache == 0
    assert out.ok.tolist() == [True, True, True, True, False, False]
    np.testing.assert_allclose(out.vectors[0], out.vectors[2], atol=1e-6)
    np.testing.assert_allclose(out.vectors[0], out.vectors[3], atol=1e-6)
    assert len(problems) == 2  # each document with the missing file is reported
    seen.clear()
    texts = embed(enc, ["a dog", "a cat", "a dog"], "text")
    assert len(seen) == 2 and texts.encoded == 2 and texts.ok.all()


def test_build_goes_on_past_every_bad_item(tiny_clip, tmp_path, bomb):
    from PIL import Image

    write_image(tmp_path / "good.png", 0)
    Image.new("RGB", (1, 6000)).save(tmp_path / "strip.png")
    os.symlink(bomb, tmp_path / "bomb.png")
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                b'{"id": "good", "image": "good.png"}',
                b'{"id": "strip", "image": "strip.png"}',
                b'{"id": "bomb", "text": "a bomb", "image": "bomb.png"}',
                b'{"id": "latin1", "text": "caf\xe9"}',
                b'{"id": "nul", "image": "x\\u0000.png"}',
                b'{"id": 7, "text": "seven"}',
                b'{"id": "7", "text": "seven again"}',
                b'{"id": "tab\\tid", "text": "tab"}',
                b'{"id": "copy", "image": "good.png"}',
            ]
        )
        + b"\n"
    )
    idx, report = build_index(path, tmp_path / "idx", str(tiny_clip), progress=False)
    assert sorted(idx.ids) == ["7", "copy", "good"]
    text = printable(report.problems)
    assert "strip.png: image is 1×6000" in text and "bomb.png: image is 900.0 megapixels" in text
    assert f"{path}:4: not valid UTF-8" in text and "NUL character" in text and "same id once read" in text
    assert "control character U+0009" in text
    assert sorted(report.skipped_ids) == ["bomb", "strip"]
    with pytest.raises(InputError, match="image is 900.0 megapixels"):
        idx.search(image=bomb)  # as a query: a clear error, not a traceback
    with pytest.raises(InputError, match="aspect ratio of 6000:1"):
        idx.search(image=tmp_path / "strip.png")
