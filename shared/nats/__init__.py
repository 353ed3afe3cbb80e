"""shared/nats."""
