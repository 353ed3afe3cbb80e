"""RAAF Streaming: the public Python API (import everything from here)."""

from shared.app import VERSION as __version__

__all__ = ["__version__"]

# Statistics and health of the running cluster (the seed's Streaming.stats), typed errors.
from raaf.errors import ConnectionError, StreamingError, TimeoutError
from raaf.stats import health, stats

__all__ += ["ConnectionError", "StreamingError", "TimeoutError", "health", "stats"]
