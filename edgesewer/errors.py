"""Exceptions that the CLI turns into one-line messages (see `edgesewer.cli._errors`).

Raise these for anything a user can cause (bad files, wrong models, dead cameras);
let programming errors propagate as ordinary tracebacks.
"""


class EdgesewerError(Exception):
    """Base class: the message is shown to the user as is, on one line."""


class DataError(EdgesewerError):
    """A data file or folder is missing, malformed or unreadable."""


class ModelNotFound(EdgesewerError):
    """An unknown model name or a checkpoint that does not fit the model."""


class ExportError(EdgesewerError):
    """Export, simplification, parity check, quantisation or engine build failed."""


class BackendError(EdgesewerError):
    """An inference backend cannot load or run an artifact."""


class CaptureError(EdgesewerError):
    """A video source cannot be opened or stopped delivering frames."""


class EndOfStream(EdgesewerError):
    """A finite source (file, folder) has no more frames."""

