"""social-triage: intent and sentiment triage for social-media customer messages."""
