"""Modality-bias audit of an index, without labels: the gap between modalities of its model on its
corpus, how probe queries' top-k modality mix compares with the corpus's, plain vs calibrated, a
verdict, and an HTML page (``mixsearch audit``)."""

from .core import AuditReport, audit_index, decide, thresholds

__all__ = ["AuditReport", "audit_index", "decide", "thresholds"]
