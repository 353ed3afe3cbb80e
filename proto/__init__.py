"""Wire schemas (msgspec Structs, tagged by ``type``) and subject names shared by every service."""

from proto.base import Message
from proto.errors import Error, ErrorCode, error_decoder, error_encoder
from proto.lifecycle import (
    LifecycleEvent,
    ServiceStarted,
    ServiceStopping,
    lifecycle_decoder,
    lifecycle_encoder,
)
from proto.subjects import (
    DEFAULT_PREFIX,
    InvalidNameError,
    Subjects,
    check_event_name,
    decode_token,
    encode_token,
    event_pattern,
)

__all__ = [
    "DEFAULT_PREFIX",
    "Error",
    "ErrorCode",
    "InvalidNameError",
    "LifecycleEvent",
    "Message",
    "ServiceStarted",
    "ServiceStopping",
    "Subjects",
    "check_event_name",
    "decode_token",
    "encode_token",
    "error_decoder",
    "error_encoder",
    "event_pattern",
    "lifecycle_decoder",
    "lifecycle_encoder",
]

# Application events (issue #5).
from proto.events import Event, EventMessage, event_decoder, event_encoder, read_event

__all__ += ["Event", "EventMessage", "event_decoder", "event_encoder", "read_event"]
