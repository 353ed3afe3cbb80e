"""Idempotent JetStream stream provisioning: create, or update to the configured limits."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

log = logging.getLogger("raaf.jetstream")


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Make the stream exist with ``config``; safe to call from every replica at once."""
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("created stream %s", config.name, extra={"subjects": config.subjects})
            return
        except BadRequestError as exc:
            # Another replica created it between our lookup and our add: fall through to update.
            if exc.err_code != 10058:  # stream name already in use
                raise
            info = await js.stream_info(config.name)
    current = info.config
    if _differs(current, config):
        await js.update_stream(config)
        log.info("updated stream %s", config.name)


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    fields = ("subjects", "max_age", "max_msgs", "max_bytes", "max_msgs_per_subject", "duplicate_window",
              "num_replicas", "max_msg_size", "discard")
    for field in fields:
        want = getattr(wanted, field)
        if want is not None and getattr(current, field) != want:
            return True
    return False
