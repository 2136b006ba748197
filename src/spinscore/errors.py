"""Exceptions that the command line reports as one clear line (no traceback)."""


class SpinscoreError(Exception):
    """A user-facing error: bad input, a bad file, a refused overwrite."""


class ConfigError(SpinscoreError):
    """Invalid configuration; the message names the file and the key."""


class DataError(SpinscoreError):
    """A data file that is missing, corrupt, truncated or inconsistent; names file and field."""


class AnalysisError(SpinscoreError):
    """An analysis that this model or data set cannot support (for example a learned density
    that does not decrease with the energy): a finding about the model, not a bad input."""
