"""The nouns every stage shares: documents, problems, hits, and the names of modalities and roles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

#: Every modality a document part can have, in the order fused vectors are built.
MODALITIES = ("text", "image", "audio", "video")
#: The modalities stored as media files (everything but text).
MEDIA = ("image", "audio", "video")
#: What a document's ``modality`` can be: one of ``MODALITIES``, or ``multimodal`` for several parts.
DOCUMENT_MODALITIES = (*MODALITIES, "multimodal")
#: Other names taken for ``multimodal`` wherever a modality is given (Python ``modality=``, CLI
#: ``--modality``, REST ``modality=``), matched without case; output always says ``multimodal``.
MODALITY_ALIASES = {
    "image+text": "multimodal",
    "text+image": "multimodal",
    "image_text": "multimodal",
    "it": "multimodal",
    "i+t": "multimodal",
}
#: Short tags for each document modality, the same in the demo, the page and the audit.
MODALITY_TAGS = {"text": "T", "image": "I", "multimodal": "M", "audio": "A", "video": "V"}
#: Roles a calibration mean can be fitted for: queries, and each document modality.
ROLES = ("query", *MODALITIES)
#: ROLES and ``multimodal``: the mean of image+text documents a joint encoder (a VLM) embeds as one
#: vector (``Encoder.joint_modalities``) instead of fusing a text and an image part.
PART_ROLES = (*ROLES, "multimodal")
#: Names a document's metadata field may not take: the columns of our own.
RESERVED_FIELDS = ("id", "_id", "text", "title", *MEDIA, "modality")


def modality_name(name: str) -> str:
    """A document modality by its one name: ``"image+text"``, ``"IT"``, ``"I+T"`` or ``"image_text"``
    give ``"multimodal"``; any other name comes back stripped, to be checked by the caller."""
    name = name.strip()
    return MODALITY_ALIASES.get(name.lower(), name)


@dataclass(frozen=True)
class Problem:
    """One thing that was skipped or changed while reading or encoding, and where."""

    where: str  # "corpus.jsonl:12" or a path
    message: str
    doc_id: str | None = None
    skipped: bool = True  # False for a note that changed nothing's fate (an unknown field ignored)

    def __str__(self) -> str:
        who = f" (document {self.doc_id!r})" if self.doc_id is not None else ""
        return f"{self.where}{who}: {self.message}"


@dataclass(frozen=True)
class Document:
    """A corpus document: any non-empty mix of text and media paths."""

    id: str
    text: str | None = None
    image: Path | None = None
    audio: Path | None = None
    video: Path | None = None
    where: str = field(default="", compare=False)
    #: Any other fields of the document (``{"year": 2021, "source": "wiki"}``), kept for filters and hits.
    metadata: Mapping[str, object] = field(default_factory=dict, hash=False)

    @property
    def parts(self) -> tuple[str, ...]:
        """The modalities this document has, in ``MODALITIES`` order."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    @property
    def modality(self) -> str:
        """``text``, ``image``, ``audio``, ``video``, or ``multimodal`` for several parts."""
        parts = self.parts
        return parts[0] if len(parts) == 1 else "multimodal"


@dataclass(frozen=True)
class Query:
    """One search query: a text, a medium, or a text with one medium (an image+text query, say).

    ``image``, ``audio`` and ``video`` are paths to files or already loaded objects (a PIL image,
    ``ingest.audio.Audio``, ``ingest.video.Video``). At least one part, at most one medium.
    """

    text: str | None = None
    image: Any = None
    audio: Any = None
    video: Any = None

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise UsageError(f"text must be a string, not {type(self.text).__name__}; pass an image as image=...")
        media = [m for m in MEDIA if getattr(self, m) is not None]
        if self.text is None and not media:
            raise UsageError("empty query: give a text, an image, an audio clip or a video (or a text with one)")
        if self.text is not None and not self.text.strip():
            raise UsageError(f"empty query: the text {self.text!r} is blank")
        if len(media) > 1:
            raise UsageError(f"one kind of media per query, not {' and '.join(media)} together")

    @property
    def parts(self) -> tuple[str, ...]:
        """The modalities this query has, in ``MODALITIES`` order (``("text", "image")``, say)."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)


@dataclass(frozen=True)
class Hit:
    """One search result: the document's rank (from 1), id, cosine score, modality and content;
    ``relevance``: the estimated relevance in [0, 1] when the index's calibration has a relevance map."""

    rank: int
    id: str
    score: float
    modality: str
    text: str | None = None
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    #: The document's metadata fields (those it has), as the index stores them.
    metadata: Mapping[str, object] | None = None
    #: The estimated relevance (0-1) when the index's calibration has a relevance map.
    relevance: float | None = None

    def to_dict(self) -> dict:
        """The hit as a JSON-ready dict, without empty fields (metadata under ``metadata``)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}
