"""spinscore: inverse statistical mechanics of continuous-spin chains with score-based models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spinscore")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
