"""shared/service."""
