"""Corpus reading: turn files on disk into documents and calibration items.

A corpus is JSON Lines (one document per line: ``id``, optional ``text``, ``image``, ``audio``,
``video``; media paths relative to the file or absolute; any other field is the document's
metadata, kept for filters) or a folder of files (images and
``.txt``/``.md``). Nothing here encodes or scores: it only reads, validates and reports.

One bad entry never stops a read: it becomes a ``Problem`` naming the file, line and document,
and reading goes on. Only a file that cannot be read at all (missing, or not UTF-8 from its first
bytes) is an ``InputError``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError
from ..types import MEDIA, MODALITIES, RESERVED_FIELDS, Document, Problem
from .media import SUFFIXES, media_kind, shown

KNOWN_FIELDS = {"id", "_id", "text", "title", *MEDIA}
TEXT_SUFFIXES = {".txt", ".md"}
JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}

Report = Callable[[Problem], None]

# Bytes that are not UTF-8 arrive as lone surrogates U+DC80..U+DCFF ("surrogateescape"): JSON
# escapes such as "\udce9" are still six ASCII characters at that point, so these can only be bad bytes.
_BAD_BYTE = re.compile("[\udc80-\udcff]")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: an id is printed one per
# line on the command line and in JSON output, and any of these would break or hide that line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Byte order marks of encodings that are not UTF-8 (UTF-32 first: its little-endian mark starts like UTF-16's).
_OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def _ignore(_: Problem) -> None:
    pass


def check_corpus(path: str | Path) -> Path:
    """``path`` if it can be a corpus (a JSON Lines file or a folder), else an ``InputError``:
    what ``read_corpus`` checks first, callable before a model loads for it."""
    path = Path(path)
    if path.is_dir() or path.is_file():
        return path
    if path.exists():
        raise InputError(f"{shown(path)}: a corpus is a JSON Lines file or a folder, and this is neither")
    raise InputError(f"{shown(path)}: no such corpus file or folder")


def read_corpus(path: str | Path, report: Report = _ignore) -> Iterator[Document]:
    """Yield the documents of a JSON Lines file or a folder; bad entries go to ``report``."""
    path = check_corpus(path)
    if path.is_dir():
        yield from _read_folder(path, report)
    else:
        yield from _read_jsonl(path, report)


def _lines(path: Path, report: Report) -> Iterator[tuple[str, str]]:
    """``(where, line)`` for each line of a UTF-8 text file, ``where`` being ``file:number``.

    The file is decoded line by line, so a line with bytes that are not UTF-8 is reported and
    skipped instead of ending the read. A UTF-8 byte order mark is dropped; a UTF-16 or UTF-32
    file is refused whole. Lines end at ``\\n``, ``\\r\\n`` or ``\\r``, as editors count them.
    """
    name = shown(path)
    try:
        raw = path.open("rb")
    except OSError as err:
        raise InputError(f"{name}: cannot read this file ({err.strerror})") from None
    with raw:
        head = raw.read(8000)
        for mark, encoding in _OTHER_BOMS.items():
            if head.startswith(mark):
                raise InputError(f"{name}: the file is {encoding} text; save it as UTF-8")
        if b"\x00" in head:  # as git decides: text never holds NUL bytes, so this is an image, an archive...
            raise InputError(f"{name}: not a text file (it holds NUL bytes); expected UTF-8 text or JSON Lines")
        offset = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        raw.seek(0)
        lines = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        for number, line in enumerate(lines, 1):
            where = f"{name}:{number}"
            ascii_only = line.isascii()  # O(1) in CPython: no bad bytes then, and one byte per character
            size = len(line) if ascii_only else len(line.encode("utf-8", "surrogateescape"))
            bad = None if ascii_only else _BAD_BYTE.search(line)
            if bad:
                column = len(line[: bad.start()].encode("utf-8", "surrogateescape"))
                byte = ord(bad[0]) - 0xDC00
                report(
                    Problem(
                        where,
                        f"not valid UTF-8 (byte 0x{byte:02x} at byte {column + 1} of the line, offset "
                        f"{offset + column} in the file); line skipped",
                    )
                )
            else:
                # a BOM inside the file (files joined with cat) is no part of the line's content
                yield where, line[1:] if number > 1 and line.startswith("\ufeff") else line
            offset += size


def _parse_json(line: str) -> object:
    """One JSON value, or an InputError in words (the reason json gives, or that it nests too deeply)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg}); line skipped") from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply); line skipped") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise InputError(f"not valid JSON ({err}); line skipped") from None


def _json_object(where: str, line: str, report: Report) -> dict | None:
    """One JSON Lines record, or None once the reason the line is skipped is reported."""
    try:
        record = _parse_json(line)
    except InputError as err:
        report(Problem(where, str(err)))
        return None
    if not isinstance(record, dict):
        report(Problem(where, "not a JSON object; line skipped"))
        return None
    return record


def _read_jsonl(path: Path, report: Report) -> Iterator[Document]:
    seen: dict[str, tuple[str, object]] = {}  # id -> (where first seen, the id as written)
    base = Path(os.path.abspath(path.parent))
    for where, line in _lines(path, report):
        if not line.strip():
            continue
        record = _json_object(where, line, report)
        if record is None:
            continue
        try:
            doc = document_from_record(record, base, where)
        except InputError as err:
            report(Problem(where, str(err), _raw_id(record)))
            continue
        others = record.keys() - KNOWN_FIELDS
        unknown = sorted(k for k in others if not _storable_name(k)) if others else None
        if unknown:
            fields = ", ".join(k if k.isprintable() else repr(k) for k in unknown)
            report(Problem(where, f"unknown field(s) {fields} ignored", doc.id, skipped=False))
        written = record.get("id", record.get("_id"))
        if doc.id in seen:
            first, before = seen[doc.id]
            if type(before) is type(written):
                report(Problem(where, f"duplicate id (first seen at {first}); later document skipped", doc.id))
            else:
                report(
                    Problem(
                        where,
                        f"duplicate id: the {_kind(written)} {json.dumps(written)} and the {_kind(before)} "
                        f"{json.dumps(before)} at {first} are the same id once read; later document skipped",
                        doc.id,
                    )
                )
            continue
        seen[doc.id] = (where, written)
        yield doc


def _kind(value: object) -> str:
    return "integer" if isinstance(value, int) else "string"


def _raw_id(record: dict) -> str | None:
    """The id as far as it can be shown in a problem report (lone surrogates escaped), or None."""
    raw = record.get("id", record.get("_id"))
    if isinstance(raw, str):
        return raw.encode("utf-8", "backslashreplace").decode("utf-8") if raw else None
    return str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else None


_JSON_TYPES = {bool: "a boolean", float: "a decimal number", list: "a list", dict: "an object"}


def _document_id(record: dict) -> str:
    """The document's id as a string: a JSON string, or an integer (``17`` and ``"17"`` are one id)."""
    key = "id" if "id" in record else "_id"
    if key not in record:
        raise InputError("document has no 'id'; skipped")
    raw = record[key]
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if not isinstance(raw, str):
        kind = "null" if raw is None else _JSON_TYPES.get(type(raw), type(raw).__name__)
        shown_value = "" if raw is None else f" ({json.dumps(raw)[:40]})"
        raise InputError(f"'{key}' must be a string or an integer, not {kind}{shown_value}; skipped")
    check_id(raw, f"'{key}'")
    return raw


def check_id(doc_id: str, what: str = "id") -> str:
    """An id must be non-empty, valid Unicode, and free of control characters (it is printed one per line)."""
    if not doc_id.strip():
        raise InputError(f"{what} is empty; skipped")
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"{what} is not valid Unicode at character {err.start} ({err.reason}); skipped") from None
    control = _CONTROL.search(doc_id)
    if control:
        raise InputError(
            f"{what} contains the control character U+{ord(control[0]):04X} at character {control.start()}; "
            "ids are printed one per line, so they may not contain line breaks, tabs or other control "
            "characters; skipped"
        )
    return doc_id


def document_from_record(record: dict, base: Path, where: str = "") -> Document:
    """Build a document from one JSON object (BEIR's ``_id``/``title`` are accepted too).

    Media paths are resolved against ``base`` and stored absolute (see ``resolve``).
    """
    doc_id = _document_id(record)
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
        media[name] = _media_path(value, base, name)
    text = check_text(text) if text and text.strip() else None
    if text is None and not media:
        raise InputError("empty document (no text, image, audio or video); skipped")
    if "modality" in record:  # ours: the index derives it from the parts
        raise InputError(
            f"field 'modality' is reserved (mixsearch sets it from the parts; reserved: {', '.join(RESERVED_FIELDS)}); "
            "rename it; skipped"
        )
    metadata = {k: v for k, v in record.items() if k not in KNOWN_FIELDS and _storable_name(k)}
    return Document(id=doc_id, text=text, where=where, metadata=metadata, **media)


@functools.lru_cache(maxsize=4096)  # a corpus repeats its few field names on every line
def _storable_name(name: str) -> bool:
    """Whether a field name can be a metadata column: printable, valid Unicode, not empty."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(name.strip()) and name.isprintable()


def _media_path(value: str, base: Path, name: str) -> Path:
    """A media path from JSON, checked for what no file name can hold, and made absolute."""
    if "\x00" in value:
        raise InputError(f"'{name}' path contains a NUL character, which no file name can; skipped")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(
            f"'{name}' path is not valid Unicode at character {err.start} ({err.reason}); skipped"
        ) from None
    path = resolve(value, base)
    try:
        str(path).encode("utf-8")  # a folder above it may have a name that is not UTF-8
    except UnicodeEncodeError:
        raise InputError(f"'{name}' path {shown(path)} is not valid UTF-8 and cannot be stored; skipped") from None
    return path


def resolve(value: str | Path, base: Path) -> Path:
    """A media path from a corpus file, made absolute: as given if absolute, else relative to ``base``.

    Absolute paths let an index find its media from any working directory; ``os.path.abspath``
    (not ``Path.resolve``) keeps symlinks as they were named.
    """
    p = Path(value).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else Path(base) / p))


def _walk(folder: Path, report: Report) -> Iterator[tuple[Path, str]]:
    """``(path, id)`` of each regular file under ``folder``, in sorted order; the id is the path
    relative to the folder. Hidden files and folders are skipped quietly; names that are not
    UTF-8, symlinks leading outside the folder, broken symlinks and special files are reported.
    Symlinked folders are not descended into (their files would come twice, or loop forever).
    """
    root = os.path.realpath(folder)

    def inside(target: str) -> bool:
        return target == root or target.startswith(root.rstrip(os.sep) + os.sep)

    def unreadable(err: OSError) -> None:
        report(Problem(shown(err.filename), f"unreadable folder ({err.strerror}); its files skipped"))

    found = []
    for top, dirs, files in os.walk(folder, onerror=unreadable):
        rel_top = Path(top).relative_to(folder)
        for name in list(dirs):
            path = Path(top) / name
            if name.startswith("."):
                dirs.remove(name)
            elif not _utf8(name):
                dirs.remove(name)
                report(
                    Problem(shown(path), "folder name is not valid UTF-8, so its files' ids cannot be stored; skipped")
                )
            elif path.is_symlink():
                dirs.remove(name)
                if not inside(os.path.realpath(path)):
                    report(Problem(shown(path), "symlink leading outside the corpus folder; skipped"))
                else:
                    report(
                        Problem(
                            shown(path),
                            "symlinked folder not followed (its files are read where it leads)",
                            skipped=False,
                        )
                    )
        for name in files:
            path = Path(top) / name
            if name.startswith("."):
                continue
            doc_id = (rel_top / name).as_posix()
            if not _utf8(name):
                report(Problem(shown(path), "file name is not valid UTF-8, so its id cannot be stored; skipped"))
                continue
            if path.is_symlink():
                target = os.path.realpath(path)
                if not inside(target):
                    report(Problem(shown(path), "symlink leading outside the corpus folder; skipped", doc_id))
                    continue
                if not os.path.exists(target):
                    report(Problem(shown(path), "broken symlink (what it names does not exist); skipped", doc_id))
                    continue
            try:
                regular = stat.S_ISREG(path.stat().st_mode)
            except OSError as err:
                report(Problem(shown(path), f"unreadable file ({err.strerror}); skipped", doc_id))
                continue
            if not regular:  # a FIFO or device would block or never end when read
                report(Problem(shown(path), "not a regular file; skipped", doc_id))
                continue
            found.append((Path(doc_id).parts, path, doc_id))
    for _, path, doc_id in sorted(found):
        yield path, doc_id


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.walk gives undecodable bytes as surrogate escapes
        return False
    return True


def _read_folder(folder: Path, report: Report) -> Iterator[Document]:
    """Each file is a document whose id is its path relative to the folder; media paths are absolute."""
    for p, doc_id in _walk(folder, report):
        where = shown(p)
        try:
            check_id(doc_id, "file name")
        except InputError as err:
            report(Problem(where, str(err), doc_id))
            continue
        suffix = p.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            try:
                text = p.read_text(encoding="utf-8-sig").strip()
            except OSError as err:
                report(Problem(where, f"unreadable text file ({err.strerror}); skipped", doc_id))
                continue
            except UnicodeDecodeError as err:
                report(Problem(where, f"text file is not valid UTF-8 (at byte offset {err.start}); skipped", doc_id))
                continue
            if not text:
                report(Problem(where, "empty text file; skipped", doc_id))
                continue
            yield Document(id=doc_id, text=text, where=where)
        elif (media := media_kind(p)) is not None:
            yield Document(id=doc_id, where=where, **{media: Path(os.path.abspath(p))})  # type: ignore[arg-type]
        else:
            report(Problem(where, f"unsupported file type '{suffix}'; skipped", doc_id))


def read_items(path: str | Path, modality: str, report: Report = _ignore) -> Iterator[str | Path]:
    """Calibration items of one modality.

    Text: a plain text file (one item per line) or JSON Lines with a ``text`` field.
    Media: a folder of files, or JSON Lines with an ``image``/``audio``/``video`` field.
    Files are read as the corpus is (see ``read_corpus``): a bad line or file is reported and skipped.
    Media paths are absolute.
    """
    path = check_items(path, modality)
    if path.is_dir():
        for p, _ in _walk(path, report):
            if p.suffix.lower() in SUFFIXES[modality]:
                yield Path(os.path.abspath(p))
        return
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    base = Path(os.path.abspath(path.parent))
    for where, line in _lines(path, report):
        line = line.strip()
        if not line:
            continue
        if not jsonl:
            yield line
            continue
        record = _json_object(where, line, report)
        if record is None:
            continue
        value = record.get(modality)
        if not isinstance(value, str) or not value.strip():
            report(Problem(where, f"no '{modality}' field; skipped"))
            continue
        try:
            item = check_text(value) if modality == "text" else _media_path(value, base, modality)
        except InputError as err:
            report(Problem(where, str(err)))
            continue
        yield item


def check_items(path: str | Path, modality: str) -> Path:
    """``path`` if it can hold calibration items of ``modality`` (see ``read_items``), else an
    ``InputError``: what ``read_items`` checks first, callable before a model loads for them."""
    path = Path(path)
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    if path.is_dir():
        if modality == "text":
            raise InputError(f"{shown(path)}: text items come from a file (one per line, or JSON Lines)")
        return path
    if not path.is_file():
        raise InputError(f"{shown(path)}: no such file or folder")
    if modality != "text" and path.suffix.lower() not in JSONL_SUFFIXES:
        raise InputError(f"{shown(path)}: {modality} items come from a folder or JSON Lines with a '{modality}' field")
    return path


def check_text(text: str) -> str:
    """Text must encode as UTF-8 (JSON can carry lone surrogates, e.g. a cut emoji)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"text is not valid Unicode at character {err.start} ({err.reason}); skipped") from None
    return text
