"""One error family: everything mixsearch raises on purpose is a ``MixsearchError``.

Each class says what went wrong in words a user can act on; the command line maps them to exit
codes in one place (``cli._app``). Errors are also ``ValueError``/``RuntimeError``/``ImportError``
/``KeyError`` where that is what Python code would expect to catch.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MixsearchError(Exception):
    """Base class of every error mixsearch raises on purpose."""


class UsageError(MixsearchError, ValueError):
    """An argument or option with an impossible value (``k=0``, ``alpha=1.5``, an unknown modality)."""


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


class FieldError(MixsearchError, KeyError):
    """A document field that is not there (raised where a mapping of fields is read by name)."""


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
