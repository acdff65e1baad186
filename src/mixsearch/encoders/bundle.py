"""Bundled models that ship only what differs from another bundled model (``mixclip-gap``).

A bundle folder holds a model's config and preprocessing files, ``heads.safetensors`` (the tensors
it replaces) and ``bundle.json`` (``{"base": "<bundled folder name>", "heads": "heads.safetensors"}``).
``assemble`` writes the full checkpoint (the base's tensors with the heads laid over them) once into
the cache folder and returns it, so every loader sees a plain transformers folder. ``mixclip-gap``
shares mixclip-flickr8k's towers this way and adds 3 MB to the wheel instead of 53 MB.

Core dependencies only (safetensors' numpy API): this runs when the model loads, not when it trains.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..config import MODELS_DIR, cache_root
from ..errors import ModelError

#: Files copied from a bundle folder into the assembled one.
COPIED = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json")
WEIGHTS = "model.safetensors"


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def assemble(folder: str | Path, root: str | Path | None = None) -> Path:
    """The full model folder of the bundle in ``folder`` (built on first use, then reused).

    The result lives under ``root`` (default ``cache_root()/bundled``) in a folder named after the
    bundle (``.../<digest>/mixclip-gap``), so the model keeps its short name; ``digest`` covers the
    base weights, the heads and the copied files, so a changed bundle never reuses a stale build."""
    from safetensors.numpy import load_file, save_file

    folder = Path(folder)
    try:
        spec = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
        base = MODELS_DIR / spec["base"]
        heads = folder / spec.get("heads", "heads.safetensors")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{folder}: not a model bundle ({err})") from None
    if not (base / WEIGHTS).is_file() or not heads.is_file():
        raise ModelError(f"{folder}: bundle needs {base / WEIGHTS} and {heads}")
    copied = [folder / n for n in COPIED if (folder / n).is_file()]
    digest = _digest(base / WEIGHTS, heads, *copied)
    if root is None:
        root = cache_root() / "bundled"
    target = Path(root) / digest / folder.name
    if (target / WEIGHTS).is_file():
        return target
    tensors = load_file(str(base / WEIGHTS))
    replaced = load_file(str(heads))
    unknown = sorted(set(replaced) - set(tensors))
    if unknown:
        raise ModelError(f"{heads}: tensors the base {spec['base']} does not have: {unknown[:5]}")
    tensors.update({k: v.astype(tensors[k].dtype) for k, v in replaced.items()})
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".assemble-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the model is not
    except OSError:  # a read-only cache: build in the temporary folder instead
        if root is not None and Path(root) == Path(tempfile.gettempdir()) / "mixsearch-bundled":
            raise
        return assemble(folder, Path(tempfile.gettempdir()) / "mixsearch-bundled")
    try:
        for path in copied:
            shutil.copyfile(path, staging / path.name)
        save_file(tensors, str(staging / WEIGHTS), metadata={"format": "pt"})
        try:
            os.replace(staging, target)  # atomic: a concurrent loader sees all or nothing
        except OSError:
            if not (target / WEIGHTS).is_file():  # not another process's finished build
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def get_model_path() -> str:
    """``mixclip-gap``, assembled (what ``BUNDLED_MODELS`` resolves the short name to)."""
    return str(assemble(MODELS_DIR / "mixclip-gap"))
