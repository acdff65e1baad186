"""``mixsearch info``: what an index holds, for people (a summary) or machines (``--json``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..types import DOCUMENT_MODALITIES
from ._app import command

#: How many of the build's problems the summary lists (``--json`` has them all).
SHOWN_PROBLEMS = 5


@command
def info(
    index_dir: Path = typer.Argument(..., help="An index folder."),
    as_json: bool = typer.Option(False, "--json", help="The manifest as JSON (with 'fields' and 'backend')."),
) -> None:
    """Show what an index holds: model, calibration, documents, the index kind, what was skipped,
    and the fields a --where condition may name."""
    from .. import open_index

    index = open_index(index_dir)  # the folder only: no model loads
    where = getattr(index.index, "info", None)  # a kind that lives elsewhere says where (milvus: uri, collection)
    backend = None if where is None else where()
    fields = index.fields()
    if as_json:
        manifest = index.manifest.to_dict() | ({} if backend is None else {"backend": backend}) | {"fields": fields}
        typer.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
        return
    for line in summary(index.manifest.to_dict(), fields, backend, name=str(index_dir)):
        typer.echo(line)


def summary(manifest: dict, fields: dict[str, str], backend: dict | None = None, name: str = "") -> list[str]:
    """The manifest as aligned ``label  value`` lines."""
    model, calibration, kind = manifest["model"], manifest["calibration"], manifest.get("index") or {}
    counts = manifest.get("documents") or {}
    build = manifest.get("build") or {}
    rows: list[tuple[str, str]] = [
        (
            "index",
            f"{name}  ({manifest.get('format')}, generation {manifest.get('generation')}, "
            f"built by mixsearch {manifest.get('mixsearch') or '?'})",
        ),
        (
            "model",
            f"{model.get('name')}  (dim {model.get('dim')}"
            + (f"; {', '.join(model['modalities'])}" if model.get("modalities") else "")
            + (f"; fingerprint {model['fingerprint']}" if model.get("fingerprint") else "")
            + ")",
        ),
        (
            "calibration",
            ", ".join(
                [str(calibration.get("method")), f"alpha {calibration.get('alpha')}"]
                + ([f"from {calibration['source']}"] if calibration.get("source") else [])
            ),
        ),
        (
            "documents",
            f"{counts.get('total', 0)}: "
            + (", ".join(f"{counts[m]} {m}" for m in DOCUMENT_MODALITIES if counts.get(m)) or "none"),
        ),
        (
            "index kind",
            kind.get("kind", "exact")
            + (f"  ({', '.join(f'{k}={v}' for k, v in kind['options'].items())})" if kind.get("options") else ""),
        ),
    ]
    if backend:
        rows.append(("backend", ", ".join(f"{k}={v}" for k, v in backend.items())))
    if manifest.get("corpus"):
        rows.append(("corpus", str(manifest["corpus"])))
    problems = list(build.get("problems") or [])
    rows.append(("skipped", str(build.get("skipped", 0))))
    rows += [("", problem) for problem in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:
        rows.append(("", f"... and {len(problems) - SHOWN_PROBLEMS} more (mixsearch info --json)"))
    rows.append(("fields", "  ".join(f"{field} {sql}" for field, sql in fields.items()) + "   (for --where)"))
    width = max(len(label) for label, _ in rows)
    return [f"{label:<{width}}  {value}" for label, value in rows]
