"""Corpus reading: turn files on disk into documents and calibration items.

A corpus is JSON Lines (one document per line: ``id``, optional ``text``, ``image``, ``audio``,
``video``; media paths relative to the file or absolute) or a folder of files (images and
``.txt``/``.md``). Nothing here encodes or scores: it only reads, validates and reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError
from ..types import MEDIA, MODALITIES, Document, Problem
from .media import SUFFIXES, media_kind

KNOWN_FIELDS = {"id", "_id", "text", "title", *MEDIA}
TEXT_SUFFIXES = {".txt", ".md"}


Report = Callable[[Problem], None]


def _ignore(_: Problem) -> None:
    pass


def read_corpus(path: str | Path, report: Report = _ignore) -> Iterator[Document]:
    """Yield the documents of a JSON Lines file or a folder; bad entries go to ``report``."""
    path = Path(path)
    if path.is_dir():
        yield from _read_folder(path, report)
    elif path.is_file():
        yield from _read_jsonl(path, report)
    else:
        raise InputError(f"{path}: no such corpus file or folder")


def _read_jsonl(path: Path, report: Report) -> Iterator[Document]:
    seen: set[str] = set()
    base = path.parent
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                report(Problem(where, f"not valid JSON ({err.msg}); line skipped"))
                continue
            if not isinstance(record, dict):
                report(Problem(where, "not a JSON object; line skipped"))
                continue
            try:
                doc = document_from_record(record, base, where)
            except InputError as err:
                report(Problem(where, str(err), _raw_id(record)))
                continue
            unknown = sorted(set(record) - KNOWN_FIELDS)
            if unknown:
                report(Problem(where, f"unknown field(s) {', '.join(unknown)} ignored", doc.id, skipped=False))
            if doc.id in seen:
                report(Problem(where, "duplicate id; later document skipped", doc.id))
                continue
            seen.add(doc.id)
            yield doc


def _raw_id(record: dict) -> str | None:
    raw = record.get("id", record.get("_id"))
    return None if raw is None else str(raw)


def document_from_record(record: dict, base: Path, where: str = "") -> Document:
    """Build a document from one JSON object (BEIR's ``_id``/``title`` are accepted too)."""
    doc_id = _raw_id(record)
    if doc_id is None or doc_id == "":
        raise InputError("document has no 'id'; skipped")
    text = record.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError("'text' must be a string; skipped")
    title = record.get("title")
    if isinstance(title, str) and title.strip():
        # joined with a space, as BEIR/MTEB evaluations do, so scores stay comparable
        text = f"{title.strip()} {text.strip()}" if text and text.strip() else title.strip()
    media = {}
    for name in MEDIA:
        value = record.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise InputError(f"'{name}' must be a path string; skipped")
        media[name] = resolve(value, base)
    text = check_text(text) if text and text.strip() else None
    if text is None and not media:
        raise InputError("empty document (no text, image, audio or video); skipped")
    return Document(id=doc_id, text=text, where=where, **media)


def resolve(value: str | Path, base: Path) -> Path:
    """A media path from a corpus file: absolute as given, else relative to ``base``."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _read_folder(folder: Path, report: Report) -> Iterator[Document]:
    """Each file is a document whose id is its path relative to the folder."""
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        doc_id = p.relative_to(folder).as_posix()
        suffix = p.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            try:
                text = p.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as err:
                report(Problem(str(p), f"unreadable text file ({err}); skipped", doc_id))
                continue
            if not text:
                report(Problem(str(p), "empty text file; skipped", doc_id))
                continue
            yield Document(id=doc_id, text=text, where=str(p))
        elif (media := media_kind(p)) is not None:
            yield Document(id=doc_id, where=str(p), **{media: p})  # type: ignore[arg-type]
        else:
            report(Problem(str(p), f"unsupported file type '{suffix}'; skipped", doc_id))


def read_items(path: str | Path, modality: str, report: Report = _ignore) -> Iterator[str | Path]:
    """Calibration items of one modality.

    Text: a plain text file (one item per line) or JSON Lines with a ``text`` field.
    Media: a folder of files, or JSON Lines with an ``image``/``audio``/``video`` field.
    """
    path = Path(path)
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    if path.is_dir():
        if modality == "text":
            raise InputError(f"{path}: text items come from a file (one per line, or JSON Lines)")
        yield from (p for p in sorted(path.rglob("*")) if p.suffix.lower() in SUFFIXES[modality])
        return
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    jsonl = path.suffix.lower() in {".jsonl", ".json", ".ndjson"}
    if modality != "text" and not jsonl:
        raise InputError(f"{path}: {modality} items come from a folder or JSON Lines with a '{modality}' field")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            if not jsonl:
                yield line
                continue
            try:
                value = json.loads(line).get(modality)
            except (json.JSONDecodeError, AttributeError):
                report(Problem(f"{path}:{number}", "not a JSON object; skipped"))
                continue
            if not isinstance(value, str) or not value.strip():
                report(Problem(f"{path}:{number}", f"no '{modality}' field; skipped"))
                continue
            try:
                check_text(value)
            except InputError as err:
                report(Problem(f"{path}:{number}", str(err)))
                continue
            yield value if modality == "text" else resolve(value, path.parent)


def check_text(text: str) -> str:
    """Text must encode as UTF-8 (JSON can carry lone surrogates, e.g. a cut emoji)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"text is not valid Unicode at character {err.start} ({err.reason}); skipped") from None
    return text
