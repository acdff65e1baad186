"""A model's identity: a short hash of its weight and preprocessing files (content, not path), so
caches and calibration files follow the model wherever it lives; and small tokenizer helpers
shared by the backends."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..config import cache_root
from ..errors import ModelError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# preprocessing changes embeddings as much as weights do: these files count in the fingerprint too
CONFIG_NAMES = {
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "modules.json",
    "sentence_bert_config.json",
}


def local_folder(source: str) -> Path:
    """The folder holding a model's files (a hub id resolves to its local cache snapshot)."""
    p = Path(source).expanduser()
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, local_files_only=True))


def fingerprint_weights(folder: Path, kind: str) -> str:
    """A short hash of a model's weight and preprocessing files."""
    h = hashlib.sha256(kind.encode())
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelError(f"{folder}: no weight files found")
    files += sorted(p for p in folder.rglob("*") if p.is_file() and p.name in CONFIG_NAMES)
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(_file_digest(p).encode())
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so large weights are hashed once."""
    stat = path.stat()
    memo_file = cache_root() / "file-digests.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        memo[key] = digest.hexdigest()
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            tmp.replace(memo_file)
        except OSError:
            pass  # a read-only cache only costs re-hashing next time
    return memo[key]


def count_truncated(tokenizer, texts: list[str], max_length: int) -> list[bool]:
    """Which texts are longer than ``max_length`` tokens (and so are cut by the encoder)."""
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    return [n > max_length for n in lengths]
