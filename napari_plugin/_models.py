"""The widget's model menu: every loadable model, site models (fine-tuned and promoted by
``sam-med finetune --from``) with their evaluation summary. No Qt.

A site model is a config with a ``provenance`` section (:mod:`sam_med.dataengine.promotion`):
base model, data manifest hash, checkpoint sha256 and the base-vs-new comparison on its
validation scans. Configs are read as plain YAML (nothing is instantiated) so listing them
is cheap and safe; a config that cannot be read is listed without a summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelEntry", "model_entries", "site_models"]


@dataclass(frozen=True)
class ModelEntry:
    """One menu item: ``name`` (what ``load_model`` takes), ``site`` (has provenance),
    ``summary`` (one line, "" for other models), ``base`` (the base model's name or None),
    ``config`` (the config file)."""

    name: str
    site: bool = False
    summary: str = ""
    base: str | None = None
    config: str = ""

    @property
    def tooltip(self) -> str:
        if not self.site:
            return f"{self.name} ({self.config})" if self.config else self.name
        return (f"site model {self.name}, fine-tuned from {self.base}\n"
                f"validation: {self.summary}\n{self.config}")


def _entry(name: str) -> ModelEntry:
    import yaml

    from sam_med.errors import SamMedError
    from sam_med.models.registry import find_model_config

    try:
        path = Path(find_model_config(name))
        data = yaml.safe_load(path.read_text()) or {}
    except (SamMedError, OSError, yaml.YAMLError):
        return ModelEntry(name)
    prov = data.get("provenance") if isinstance(data, dict) else None
    if not isinstance(prov, dict):
        return ModelEntry(name, config=str(path))
    ev = prov.get("evaluation") or {}
    base = (prov.get("base_model") or {}).get("name")
    return ModelEntry(name, True, str(ev.get("summary") or "no evaluation recorded"), base, str(path))


def model_entries() -> list[ModelEntry]:
    """Every registered model (sorted by name), site models marked with their summary."""
    from sam_med.models.registry import list_models

    return [_entry(n) for n in list_models()]


def site_models() -> list[ModelEntry]:
    """Only the site models (those with provenance)."""
    return [e for e in model_entries() if e.site]
