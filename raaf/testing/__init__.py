"""Test doubles for the one thing RAAF fakes: the LLM, as a real OpenAI-compatible HTTP server."""

from raaf.testing.openai_mock import (
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
    "MockStats",
    "OpenAIMock",
    "Rule",
    "Script",
    "ToolCall",
    "main",
    "split_fragments",
    "split_words",
]
