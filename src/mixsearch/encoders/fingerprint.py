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


#: A text is first cut to this many characters per token of context (tokens average 3-5
#: characters in English; more in a text of long words, fewer in CJK), so tokenising a 10 MB text
#: costs what tokenising its head costs.
CHARS_PER_TOKEN = 8
#: Tokens a cut head must have beyond the context for the cut to be safe: the cut (at whitespace)
#: can only change the tokens at its end, which truncation drops anyway.
CUT_MARGIN = 8


def cut_texts(tokenizer, texts: list[str], max_length: int) -> tuple[list[str], list[bool]]:
    """Each text, cut at whitespace to a head that still has more than ``max_length`` tokens (the
    tokens the encoder keeps are the same), and whether it is truncated (longer than ``max_length``
    tokens). A head with too few tokens (long words) is grown until it has enough, or is the text."""
    heads, truncated = list(texts), [False] * len(texts)
    todo, budget = list(range(len(texts))), max(1, max_length) * CHARS_PER_TOKEN
    while todo:
        cut = {i: _head(texts[i], budget) for i in todo}
        counts = [len(ids) for ids in tokenizer([cut[i] for i in todo], add_special_tokens=True)["input_ids"]]
        still = []
        for i, n in zip(todo, counts):
            if len(cut[i]) == len(texts[i]) or n > max_length + CUT_MARGIN:
                heads[i], truncated[i] = cut[i], n > max_length
            else:
                still.append(i)
        todo, budget = still, budget * 4
    return heads, truncated


def _head(text: str, budget: int) -> str:
    """``text`` cut to about ``budget`` characters: at its last whitespace there, so no word is
    split (a text with no whitespace near there, CJK say, is cut at ``budget`` itself)."""
    if len(text) <= budget:
        return text
    at = max(text.rfind(space, 0, budget + 1) for space in " \n\t\r")
    return text[:at] if at > budget // 2 else text[:budget]
