"""The data engine (issue 19): what users accept becomes data that ``sam-med evaluate`` and
``sam-med finetune --from`` read.

:mod:`sam_med.dataengine.accepted` owns the accepted-results folder (format, atomic writer,
reader, scan checksums); see ``docs/dataengine.md``.
"""

from .accepted import (ENTRY_FORMAT, FORMAT, AcceptedDataset, AcceptedEntry, check_folder, is_accepted_folder,
                       scan_checksum, write_entry)
from .from_session import accept_session
from ..evaluation.datasets import register_folder_reader as _register
from .evaluation import open_accepted as _open_accepted

_register(is_accepted_folder, _open_accepted)  # `sam-med evaluate <accepted folder>`

__all__ = ["AcceptedDataset", "AcceptedEntry", "write_entry", "scan_checksum", "is_accepted_folder", "check_folder",
           "FORMAT", "ENTRY_FORMAT", "accept_session"]
