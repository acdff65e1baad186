import json

import pytest

from mixsearch import InputError, read_corpus
from mixsearch.ingest import read_items


def test_jsonl_corpus_reports_bad_lines(mixed_corpus):
    problems = []
    docs = list(read_corpus(mixed_corpus, problems.append))
    ids = [d.id for d in docs]
    assert ids[:12] == [f"t{i}" for i in range(4)] + [f"i{i}" for i in range(4)] + [f"m{i}" for i in range(4)]
    assert {d.modality for d in docs} == {"text", "image", "multimodal"}
    assert docs[4].image == mixed_corpus.parent / "img" / "i0.png"  # relative to the file, made absolute
    assert all(d.image.is_absolute() for d in docs if d.image)
    text = "\n".join(map(str, problems))
    assert "empty document" in text and "'empty'" in text
    assert next(d for d in docs if d.id == "long").metadata == {"colour": "red"}  # extra fields are metadata
    assert f"{mixed_corpus}:17: not valid JSON" in text
    # missing and corrupt images are found when encoding, not when reading
    assert "missing" in ids and "corrupt" in ids


def test_duplicate_and_missing_ids(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        "\n".join(json.dumps(r) for r in [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}, {"text": "z"}])
    )
    problems = []
    assert [d.text for d in read_corpus(path, problems.append)] == ["x"]
    assert "c.jsonl:2 (document 'a'): duplicate id" in str(problems[0])
    assert "c.jsonl:3: document has no 'id'" in str(problems[1])


def test_beir_records_and_folders(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"_id": "d1", "title": "Title", "text": "Body."}) + "\n")
    assert next(read_corpus(path)).text == "Title Body."
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello")
    (folder / "sub" / "b.png").write_bytes(b"")
    (folder / "c.xyz").write_text("?")
    problems = []
    docs = list(read_corpus(folder, problems.append))
    assert [(d.id, d.modality) for d in docs] == [("a.txt", "text"), ("sub/b.png", "image")]
    assert "unsupported file type" in str(problems[0])
    with pytest.raises(InputError, match="no such corpus"):
        list(read_corpus(tmp_path / "nope.jsonl"))


def test_calibration_items(tmp_path):
    (tmp_path / "q.txt").write_text("one\n\ntwo\n")
    assert list(read_items(tmp_path / "q.txt", "text")) == ["one", "two"]
    (tmp_path / "t.jsonl").write_text('{"text": "a"}\n{"image": "x.png"}\n')
    problems = []
    assert list(read_items(tmp_path / "t.jsonl", "text", problems.append)) == ["a"]
    assert list(read_items(tmp_path / "t.jsonl", "image")) == [tmp_path / "x.png"]
    assert "t.jsonl:2: no 'text' field" in str(problems[0])
    with pytest.raises(InputError, match="image items come from a folder"):
        list(read_items(tmp_path / "q.txt", "image"))
