"""The Lua scripts that make every job state change atomic in Redis, by operation family."""
