"""shared/chat."""
