"""Clients of the services over NATS: runs, jobs and chat, for the gateway, the Python API and other services."""
