"""The package version (one place; ``aecnn.__version__`` and ``aecnn --version``)."""

__version__ = "0.2.0"
