"""Evaluation of trained models and, later, the paper's tables and figures from records."""

from aecnn.evaluation.evaluate import evaluate_checkpoint

__all__ = ["evaluate_checkpoint"]
