"""Error types. Every message names the thing that is wrong and how to fix it."""

import difflib


def did_you_mean(word: str, choices) -> str:
    """" (did you mean 'x'?)" when `word` looks like a misspelling of one of `choices`, else ""."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
