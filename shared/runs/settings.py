"""The runs engine's seed variables (``ASYNC_*``, ``STREAMING_*``): the agent-runner and the Python API share them."""

from __future__ import annotations

from shared.service.settings import Setting

POOL_SIZE = Setting("ASYNC_POOL_SIZE", 20, min=1, max=100_000)  # runs executing at once
QUEUE_SIZE = Setting("ASYNC_QUEUE_SIZE", 1000, min=0, max=1_000_000)  # accepted runs waiting for a slot
TIMEOUT = Setting("STREAMING_TIMEOUT", 60.0, min=0.1)  # a run's default timeout, seconds from acceptance
CHUNK_SIZE = Setting("STREAMING_CHUNK_SIZE", 1024, min=1, max=16 * 1024**2)  # most characters of one text delta
BUFFER_SIZE = Setting("STREAMING_BUFFER_SIZE", 8192, min=0, max=64 * 1024**2)  # a processor's context, characters
