"""safepredict's own version, read from the installed distribution's metadata (one source: pyproject)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    """The version of the installed ``safepredict`` distribution ("0+unknown" when run from a bare tree)."""
    try:
        return version("safepredict")
    except PackageNotFoundError:
        return "0+unknown"
