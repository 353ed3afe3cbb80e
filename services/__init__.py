"""The five RAAF Streaming services, each runnable as ``python -m services.<name>``."""
