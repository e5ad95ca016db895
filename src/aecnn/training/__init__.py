"""Training: the shared loop, checkpoints, baseline training (and Algorithm 1 stages)."""

from aecnn.training.baseline import train_baseline
from aecnn.training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig

__all__ = ["DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "train_baseline"]
