"""``raaf.EventEmitter``: the seed's publish/subscribe event system; defined in ``shared.events.emitter``."""

from shared.events.emitter import (
    Event,
    EventEmitter,
)

__all__ = [
    "Event",
    "EventEmitter",
]
