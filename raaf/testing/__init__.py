"""Test doubles for the one thing RAAF fakes: the LLM, as a real OpenAI-compatible HTTP server."""

from raaf.testing.providers import MockProvider, StreamingProvider
from shared.openai_mock import (
    Match,
    MockStats,
    OpenAIMock,
    Rule,
    Script,
    ToolCall,
    main,
    split_fragments,
    split_words,
)

__all__ = [
    "Match",
    "MockProvider",
    "MockStats",
    "OpenAIMock",
    "Rule",
    "Script",
    "StreamingProvider",
    "ToolCall",
    "main",
    "split_fragments",
    "split_words",
]
