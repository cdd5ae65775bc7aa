"""Provenance: the versions of sam-med and of the packages that decide a result (recorded with
every output, session and sidecar). The bottom of the package: it imports nothing of sam-med."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["versions"]

PACKAGES = ("sam-med", "torch", "monai", "numpy", "nibabel", "pydicom", "SimpleITK")


def versions() -> dict[str, str]:
    """``{package: version}`` for Python and :data:`PACKAGES` (those installed)."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
