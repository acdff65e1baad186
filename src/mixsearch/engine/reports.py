"""What a build or an add did: counts, and every problem with where it happened."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import Problem


@dataclass
class Report:
    """What reading and encoding documents did; the base of ``BuildReport`` and ``UpdateReport``."""

    encoded: int = 0
    from_cache: int = 0
    truncated: int = 0
    skipped: int = 0  # documents (and corpus lines) left out, for any reason
    problems: list[Problem] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for people: counts, then each problem (the first 50)."""
        return "\n".join(self.head_lines() + self.problem_lines() + self.notes)

    def head_lines(self) -> list[str]:
        """The first lines of ``summary``: what was done (each report says its own)."""
        lines = [f"{self.encoded} items encoded, {self.from_cache} from cache in {self.seconds:.1f} s"]
        return lines + self.truncated_lines()

    def truncated_lines(self) -> list[str]:
        """A line on texts cut at the model's context, when there were any."""
        if not self.truncated:
            return []
        return [f"{self.truncated} texts were longer than the model's context and were truncated"]

    def problem_lines(self, most: int = 50) -> list[str]:
        """How many documents were skipped, and each problem (the first ``most``)."""
        if not (self.skipped or self.problems):
            return []
        noun = "document" if self.skipped == 1 else "documents"
        lines = [f"{self.skipped} {noun} skipped; {len(self.problems)} problems:"]
        lines += [f"  - {p}" for p in self.problems[:most]]
        if len(self.problems) > most:
            lines.append(f"  ... and {len(self.problems) - most} more (all are in manifest.json)")
        return lines


@dataclass
class BuildReport(Report):
    """What a build did: counts, and every problem with where it happened."""

    indexed: int = 0

    def head_lines(self) -> list[str]:
        """Documents indexed, items encoded and from cache, texts truncated."""
        return [
            f"indexed {self.indexed} documents in {self.seconds:.1f} s "
            f"({self.encoded} items encoded, {self.from_cache} from cache)",
            *self.truncated_lines(),
        ]


@dataclass
class UpdateReport(Report):
    """What an add did: documents added and replaced, what was encoded, and every problem."""

    added: int = 0
    replaced: int = 0
    compacted: bool = False

    def head_lines(self) -> list[str]:
        """Documents added and replaced, items encoded, the calibration kept, a compaction."""
        lines = [
            f"added {self.added} documents ({self.replaced} of them replaced documents with the same id) in "
            f"{self.seconds:.1f} s ({self.encoded} items encoded, {self.from_cache} from cache)",
            "the index's calibration and alpha were kept as they were (not refitted); refit with "
            "'mixsearch recalibrate INDEX --calibration corpus' if the corpus changed much",
        ]
        if self.compacted:
            lines.append("more than half the stored rows were deleted: the index was compacted")
        return lines
