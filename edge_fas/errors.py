"""Error types. Every message names the thing that is wrong and how to fix it."""


class EdgeFasError(Exception):
    """Base class for errors edge-fas reports to the user (the CLI prints them without a traceback)."""


class ConfigError(EdgeFasError):
    """A configuration key or value is wrong."""


class CameraError(EdgeFasError):
    """A camera cannot be opened, has gone away, or cannot deliver the requested streams."""


class CalibrationError(EdgeFasError):
    """A calibration is missing, malformed, or does not fit the streams it is applied to."""


class ArtifactError(EdgeFasError):
    """A model artifact is missing, incomplete, or a file in it does not match its recorded hash."""


class RecordingError(EdgeFasError):
    """A recording is corrupt, truncated, or cannot be written fast enough."""
