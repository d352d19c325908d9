"""Evaluation of a run's best checkpoint on one of its splits."""
