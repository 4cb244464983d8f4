"""What the churn engine raises when it cannot do what was asked; the message says why."""


class TrainingError(Exception):
    """Training cannot run on this data; the message says why and what to change."""


class ScoringError(Exception):
    """Scoring cannot run (no active model, unreadable artifact…)."""
