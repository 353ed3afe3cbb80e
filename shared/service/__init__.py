"""A service's life: settings from the environment, App start/stop, health routes, logging, the event loop."""
