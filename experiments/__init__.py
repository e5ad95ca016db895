"""Reproduction drivers, benchmark scripts and their configs (like torchvision's
``references/``). They import the library (``aecnn``); the library never imports them.
Run from the repository root, e.g. ``python -m experiments.reproduce table1 --scale smoke``."""
