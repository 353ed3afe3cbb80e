"""The OpenAI-wire mock server for tests and the demo model; defined in ``shared.openai_mock``."""

from shared.openai_mock import (
    Match,
    MockStats,
    OpenAIMock,
    Rule,
    Script,
    ToolCall,
    demo_script,
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
    "demo_script",
    "main",
    "split_fragments",
    "split_words",
]
