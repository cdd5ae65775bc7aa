"""Exception types. Every error a user can cause derives from :class:`SamMedError`;
the CLI turns these into a one-line message and exit status 2."""


class SamMedError(Exception):
    """Base class for errors caused by input (files, prompts, checkpoints, options)."""


class InputFileError(SamMedError):
    """A file or folder cannot be read as an image (missing, corrupt, unsupported)."""


class GeometryError(SamMedError):
    """Image geometry is invalid or cannot be represented exactly."""


class DicomSeriesError(InputFileError):
    """A DICOM series is ambiguous or irregular (several series, 4D, tilt, gaps)."""


class CheckpointError(SamMedError):
    """A model checkpoint is missing, has the wrong hash, keys or shapes, or is unsafe."""


class PromptError(SamMedError):
    """A prompt is invalid: outside the volume, inverted, NaN, empty."""


class OutputError(SamMedError):
    """An output cannot be written (would overwrite the input, bad format, ...)."""
