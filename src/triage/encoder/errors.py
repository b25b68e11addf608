"""The encoder package's error."""

from triage.errors import TriageError


class BackboneError(TriageError, RuntimeError):
    """Resolving, converting or verifying the encoder failed; the message says what to do."""
