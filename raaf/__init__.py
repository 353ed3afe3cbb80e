"""RAAF Streaming: the public Python API (import everything from here)."""

from shared.app import VERSION as __version__

__all__ = ["__version__"]
