"""shared/events."""
