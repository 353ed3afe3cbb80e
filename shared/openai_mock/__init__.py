"""A real HTTP server speaking OpenAI's chat-completions wire format, scripted per request."""

from shared.openai_mock.cli import main
from shared.openai_mock.demo import demo_script
from shared.openai_mock.script import Match, Rule, Script, ToolCall, split_fragments, split_words
from shared.openai_mock.server import MockStats, OpenAIMock

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
