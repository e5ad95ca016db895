"""Baselines the paper compares AECNN with, behind the same interfaces (BottleNet++, ...)."""
