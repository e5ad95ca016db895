"""aecnn: device-edge co-inference of CNNs with attention-based feature compression."""

from aecnn.errors import AecnnError

__version__ = "0.1.0"
__all__ = ["AecnnError", "__version__"]
