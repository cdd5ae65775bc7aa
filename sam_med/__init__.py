"""sam-med: promptable 3D segmentation of CT and MRI with Segment-Anything-style models."""

from .errors import SamMedError
from .volume import Volume

__version__ = "0.1.0"

__all__ = ["Volume", "SamMedError", "__version__"]
