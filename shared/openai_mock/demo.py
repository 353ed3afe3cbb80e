"""The demo model's behaviour: canned multi-sentence answers, tool calls when asked, and handoffs to billing."""

from __future__ import annotations

import re
from typing import Final

from shared.openai_mock.script import Script, ToolCall, default_script, has_tool_command
from shared.openai_mock.wire import ChatRequest

HANDOFF_PREFIX: Final = "transfer_to_"
# The user's words quoted back at most this long, so a huge message does not become a huge answer.
QUOTE_LIMIT: Final = 200

_WEATHER: Final = re.compile(r"\b(weather|forecast|temperature|rain(ing|y)?|sunny|cold|warm)\b", re.IGNORECASE)
_TIME: Final = re.compile(r"\b(time|clock|hour|date|today)\b", re.IGNORECASE)
_BILLING: Final = re.compile(r"\b(invoices?|bills?|billing|refunds?|payments?|paid|pay|charged?|charges)\b",
                             re.IGNORECASE)
# "weather in Paris", "forecast for New York": one or two capitalised words after the preposition.
_CITY: Final = re.compile(r"\b(?:in|for|at)\s+([A-Z][\w'-]*(?:\s[A-Z][\w'-]*)?)")
DEFAULT_CITY: Final = "Amsterdam"


def demo_script(request: ChatRequest) -> Script:
    """What the demo model answers: deterministic for the same conversation and offered tools."""
    results = request.tool_results()
    if results:
        return _after_tools(request.called_tools(), results)
    text = request.last_user_text()
    if has_tool_command(text):
        return default_script(request)  # `[[tool:NAME {json}]]` still forces a call, as with the plain mock
    offered = request.tool_names
    for name in offered:
        if name.startswith(HANDOFF_PREFIX) and _wants(name.removeprefix(HANDOFF_PREFIX), text):
            target = name.removeprefix(HANDOFF_PREFIX)
            return Script(text=f"That is a question for {target}, so I am handing you over. ",
                          tool_calls=[ToolCall(name=name, arguments={})])
    if "get_weather" in offered and _WEATHER.search(text):
        city = _CITY.search(text)
        return Script(text="Let me look that up with the weather tool. ",
                      tool_calls=[ToolCall(name="get_weather", arguments={"city": city[1] if city else DEFAULT_CITY})])
    if "get_time" in offered and _TIME.search(text):
        return Script(text="Let me check the clock. ",
                      tool_calls=[ToolCall(name="get_time", arguments={"timezone": "UTC"})])
    return Script(text=_answer(text, offered))


def _wants(target: str, text: str) -> bool:
    """Whether the user's message is for the agent ``target``: billing words, or its name."""
    if target == "billing" and _BILLING.search(text):
        return True
    return re.search(rf"\b{re.escape(target)}\b", text, re.IGNORECASE) is not None


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT].rstrip() + "…"


def _answer(text: str, offered: list[str]) -> str:
    parts = [
        f"Thanks for your message: “{_quote(text)}”." if text.strip() else "Hello!",
        "I am the offline RAAF demo model, so this answer is canned, but everything around it is real.",
        "Every word you see arrives as its own run_text_delta event, stored in JetStream and relayed by the "
        "gateway while it streams.",
        "Reload the page mid-answer and the run resumes from its last seq, nothing lost or doubled; press Stop "
        "and it ends as cancelled.",
    ]
    if "get_weather" in offered:
        parts.append("Ask me about the weather in Paris to watch a tool call stream its arguments and output.")
    if "get_time" in offered:
        parts.append("Ask me what time it is and I will call the clock tool.")
    for name in offered:
        if name.startswith(HANDOFF_PREFIX):
            target = name.removeprefix(HANDOFF_PREFIX)
            hint = "about an invoice" if target == "billing" else f"for {target}"
            parts.append(f"Ask {hint} and I will hand the conversation over to the {target} agent.")
    if not offered:
        parts.append("Set OPENAI_API_KEY or OPENAI_BASE_URL to talk to a real model instead.")
    return " ".join(parts)


def _after_tools(called: list[str], results: list[str]) -> Script:
    handoffs = [name.removeprefix(HANDOFF_PREFIX) for name in called if name.startswith(HANDOFF_PREFIX)]
    if handoffs:
        target = handoffs[0]
        return Script(text=(
            f"Hi, {target} here: the conversation was handed over to me, with everything said so far. "
            "In this demo there are no real accounts, so here is what would happen next: I would find the invoice "
            "you mean, check the payments against it and explain any charge you do not recognise. "
            f"The handoff you just watched was a tool call named {HANDOFF_PREFIX}{target}; the run switched "
            "agents and went on in the same stream."))
    tools = [name for name in called if not name.startswith(HANDOFF_PREFIX)] or ["tool"]
    answers = "; ".join(results)
    return Script(text=(
        f"The {' and '.join(dict.fromkeys(tools))} tool answered: {answers}. "
        "That was a real tool call: the runner ran a Python function with the arguments you saw stream, and fed "
        "its output back to the model for this answer. "
        "Try another question, or pick the triage agent and ask about an invoice to see a handoff."))
