"""Exceptions a researcher can act on: each names the file or value and what is wrong."""


class BvaeError(Exception):
    """Base of every error the engine raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(BvaeError, ValueError):
    """A training setting is out of range or inconsistent."""


class DatasetError(BvaeError):
    """A data file or folder is missing, malformed or not what the loader expects."""


class CheckpointError(BvaeError):
    """A checkpoint cannot be read, is not ours, or does not fit the model."""


class TrainingError(BvaeError):
    """Training cannot go on (for example a non-finite loss); the last good checkpoint is kept."""


class CodecError(BvaeError):
    """A compressed .bvz file is malformed, corrupted, or made by another model."""


def os_reason(exc: BaseException) -> str:
    """What went wrong, for a message naming the file: "no space left on device" for an OSError with an errno
    (its file name is left out: the message names it), else the first line of the exception's text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
