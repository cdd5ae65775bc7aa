"""Accepting a :class:`~sam_med.session.Session`'s objects into an accepted-results folder
(what :meth:`Session.accept`, ``sam-med segment --accept-to`` and napari's Accept call)."""

from __future__ import annotations

import os
from typing import Iterable

from ..errors import SamMedError
from .accepted import AcceptedEntry, write_entry

__all__ = ["accept_session"]


def accept_session(session, root: str | os.PathLike, ids: Iterable[int] | None = None) -> AcceptedEntry:
    """Write one entry holding the objects ``ids`` of ``session`` (default: every object
    with a non-empty mask): their masks combined under the session's overlap rule (label
    value = object id), their prompts and click history (the points in the order given),
    the scan reference with its checksum and the predictor's model name / checkpoint."""
    if ids is None:
        chosen = [o for o in session.objects.values() if o.mask is not None and o.mask.any()]
        if not chosen:
            raise SamMedError("nothing to accept: no object has a mask yet")
    else:
        chosen = [session.get(i) for i in ids]
        if not chosen:
            raise SamMedError("nothing to accept: no object ids given")
        for o in chosen:
            if o.mask is None or not o.mask.any():
                raise SamMedError(f"object {o.id} ({o.name!r}) has no mask to accept; segment it first")
    labels = session.label_map(ids=[o.id for o in chosen])
    objects = [{"id": o.id, "name": o.name, "label": o.id, "prompts": o.prompts.to_json(),
                "clicks": [{"ijk": [float(c) for c in p.ijk], "positive": bool(p.positive)}
                           for p in o.prompts.points]}
               for o in chosen]
    model = {"name": getattr(session.predictor, "model_name", None),
             "checkpoint_sha256": getattr(session.predictor, "checkpoint_sha256", None)}
    return write_entry(root, session.volume, labels, objects, model=model)
