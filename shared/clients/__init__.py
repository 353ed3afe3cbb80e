"""shared/clients."""
