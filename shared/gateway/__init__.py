"""shared/gateway."""
