"""One error family: everything mixsearch raises on purpose is a ``MixsearchError``.

Each class says what went wrong in words a user can act on, and carries the exit code the command
line maps it to (``cli`` does that in one place): 2 for a usage error (an option or argument with
an impossible value), 1 for a run that failed (bad input, a model that will not load, a
calibration that does not fit, an unreadable index). Errors are also ``ValueError``/``RuntimeError``
/``ImportError`` where that is what Python code would expect to catch.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MixsearchError(Exception):
    """Base class of every error mixsearch raises on purpose."""

    exit_code = 1


class UsageError(MixsearchError, ValueError):
    """An argument or option with an impossible value (``k=0``, ``alpha=1.5``, an unknown modality)."""

    exit_code = 2


class InputError(MixsearchError, ValueError):
    """Bad input that names where it came from (file, line, document)."""


class ModelError(MixsearchError, RuntimeError):
    """A model that cannot be found, loaded or used for a modality, or a device that is not there."""


class MissingDependencyError(MixsearchError, ImportError):
    """An optional library is not installed; the message names the extra that installs it."""


class CalibrationError(MixsearchError, ValueError):
    """A calibration that cannot be fitted or applied (unfitted role, wrong model, wrong dimension)."""


class VectorIndexError(MixsearchError, ValueError):
    """An index folder that is missing or unreadable, or vectors and queries that do not fit it."""


class BenchError(InputError):
    """A benchmark that cannot be run as asked (missing data, a model without an image tower...)."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs the Python package {module.split('.')[0]!r}, which is not installed; "
            f"install it with: pip install 'mixsearch[{extra}]'"
        ) from None
