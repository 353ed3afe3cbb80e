"""Agent runs: the run log in JetStream, the open-runs registry, chunks, stream processors and tools."""
