"""shared/runs."""
