"""shared/stats."""
