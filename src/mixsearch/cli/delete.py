"""``mixsearch delete``: delete documents from an index by id."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import command, say


@command
def delete(
    index_dir: Path = typer.Argument(..., help="An index folder made by 'mixsearch index'."),
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated document ids."),
    ids_file: Optional[Path] = typer.Option(None, "--ids-file", help="A file of document ids, one per line."),
) -> None:
    """Delete documents from an index by id (one atomic change; unknown ids are reported)."""
    from .. import open_index
    from ..errors import InputError, UsageError

    if (ids is None) == (ids_file is None):
        raise UsageError("give the ids to delete with --ids a,b,c or --ids-file FILE (one of them)")
    if ids is not None:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
    else:
        try:
            wanted = [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]  # type: ignore[union-attr]
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{ids_file}: cannot read the ids ({err})") from None
    if not wanted:
        raise UsageError("no ids given to delete")
    wanted = list(dict.fromkeys(wanted))
    index = open_index(index_dir)
    missing = [i for i in wanted if i not in index._rows]
    removed = index.delete(wanted)
    say(f"{index_dir}: deleted {removed} of {len(wanted)} ids; {len(index)} documents remain")
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        say(f"not in the index: {shown}")
