"""The errors a user can cause. Every one derives from :class:`TriageError`; the CLI prints
them in one line (they say what to do) and lets any other exception show its traceback."""


class TriageError(Exception):
    """Bad input, a bad config or a missing file: the message names it and says what to do."""


class DataError(TriageError, ValueError):
    """Bad input data or a bad data config. The message names the file, row or key and says
    what to do."""
