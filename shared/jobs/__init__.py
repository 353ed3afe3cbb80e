"""shared/jobs."""
