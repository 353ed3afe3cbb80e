"""NATS and JetStream plumbing: connections, barriers, streams, acks, and the guarded fast paths over nats-py."""
