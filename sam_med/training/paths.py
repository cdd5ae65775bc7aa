"""Where a fine-tune config's relative paths point: as given when they exist (or are absolute),
else relative to the repository root (``configs/finetune/*.yaml`` name ``../shared/data/...``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "resolve_dataset"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_dataset(path: str) -> str:
    """A dataset path as given, else relative to the repository root when it exists there."""
    p = Path(str(path)).expanduser()
    if p.exists() or p.is_absolute():
        return str(p)
    alt = REPO_ROOT / p
    return str(alt if alt.exists() else p)
