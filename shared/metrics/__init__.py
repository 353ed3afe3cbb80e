"""Prometheus metrics: the one catalogue of names, metric specs, the runtime's registry, a lock-free histogram."""
