"""Durable background jobs in Redis: the store and its Lua scripts, queues, workers, the processor, maintenance."""
