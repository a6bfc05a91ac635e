"""tcia-mirror: a verified, incremental mirror of The Cancer Imaging Archive."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tcia-mirror")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
