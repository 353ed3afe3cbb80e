"""The whole platform on one machine: embedded nats-server and valkey-server, and the supervised services."""
