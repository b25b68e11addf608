"""The errors a user can cause. Every one derives from :class:`TriageError`; the CLI prints
them in one line (they say what to do) and lets any other exception show its traceback."""


class TriageError(Exception):
    """Bad input, a bad config or a missing file: the message names it and says what to do."""


class DataError(TriageError, ValueError):
    """Bad input data or a bad data config. The message names the file, row or key and says
    what to do."""


class ConfigError(TriageError, ValueError):
    """A configuration that cannot be composed or does not validate, or a value a stage cannot
    use; the message names the key."""


class MissingInputError(TriageError, FileNotFoundError):
    """A file or folder a stage reads is not there; the message says which command makes it."""


class GateError(TriageError, RuntimeError):
    """A model failed a quality gate (e.g. the export's parity gate) and was not shipped; the
    message says which numbers failed."""
