"""shared/devstack."""
