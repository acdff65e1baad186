"""The installed version, in a module of its own so that any module can import it without
importing the package (``from .. import __version__`` made a cycle through ``mixsearch/__init__``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mixsearch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
