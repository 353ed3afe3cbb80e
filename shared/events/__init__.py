"""Application events over NATS: the EventEmitter, its bus, listeners, history, outbox, settings and metrics."""
