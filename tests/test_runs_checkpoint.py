"""A run's checkpoint is the fold of its stored events up to the last completed step; clients drop the rest."""

from __future__ import annotations

from typing import Any

from proto.runs import (
    AgentChanged,
    AgentSpec,
    Handoff,
    RunEvent,
    RunRequest,
    RunStarted,
    RunStepRestarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolOutput,
)
from shared.runs.checkpoint import restore
from shared.runs.chunks import ChunkStream
from shared.runs.continuation import Continuation, transcript

AGENTS = {"triage": AgentSpec(name="triage", instructions="Route.", tools=["lookup"], handoffs=["billing"]),
          "billing": AgentSpec(name="billing", instructions="Bill.")}
REQUEST = RunRequest(run_id="r1", agent="triage", input="refund?")


def numbered(*events: Any) -> list[RunEvent]:
    """Events as stored: run r1, seq 1, 2, 3 ..."""
    return [kind(run_id="r1", seq=n, at=0.0, **fields) for n, (kind, fields) in enumerate(events, start=1)]


def turn_with_calls(*calls: tuple[str, str]) -> list[tuple[Any, dict[str, Any]]]:
    events: list[tuple[Any, dict[str, Any]]] = [(TextDelta, {"agent": "triage", "delta": "Checking. "})]
    for call_id, name in calls:
        events += [(ToolCallStarted, {"agent": "triage", "call_id": call_id, "name": name}),
                   (ToolCallDelta, {"call_id": call_id, "delta": "{}"})]
    return events + [(ToolCallFinished, {"call_id": c, "name": n, "arguments": "{}"}) for c, n in calls]


STARTED = (RunStarted, {"agent": "triage", "model": "m", "instance": "a"})


def test_a_turn_cut_off_while_streaming_is_asked_again_from_the_conversation_before_it() -> None:
    events = numbered(STARTED, (TextDelta, {"agent": "triage", "delta": "Half an ans"}))
    point = restore(REQUEST, AGENTS, events)
    assert (point.step, point.turn, point.after_seq, point.last_seq) == ("model_turn", 1, 1, 2)
    assert point.messages == [{"role": "system", "content": "Route."}, {"role": "user", "content": "refund?"}]


def test_a_turn_whose_calls_were_not_all_stored_is_asked_again() -> None:
    events = numbered(STARTED, *turn_with_calls(("c1", "lookup"), ("c2", "lookup"))[:-1])
    point = restore(REQUEST, AGENTS, events)
    assert (point.step, point.turn, point.turns, point.calls) == ("model_turn", 1, 0, None)


def test_a_tool_phase_keeps_the_reported_outputs_and_leaves_the_others_to_finish() -> None:
    events = numbered(STARTED, *turn_with_calls(("c1", "lookup"), ("c2", "lookup")),
                      (ToolOutput, {"call_id": "c1", "name": "lookup", "output": "42"}))
    point = restore(REQUEST, AGENTS, events)
    assert (point.step, point.turn, point.after_seq) == ("tool_calls", 1, len(events))
    assert [c.id for c in point.calls or []] == ["c1", "c2"] and point.outcomes == {"c1": ("42", False)}
    assert point.messages[-1]["tool_calls"][1]["id"] == "c2" and point.messages[-1]["content"] == "Checking. "


def test_a_completed_handoff_moves_the_conversation_to_the_new_agent_and_its_instructions() -> None:
    events = numbered(STARTED, *turn_with_calls(("c1", "transfer_to_billing")),
                      (Handoff, {"call_id": "c1", "from_agent": "triage", "to_agent": "billing"}),
                      (AgentChanged, {"agent": "billing", "previous": "triage", "model": "m"}),
                      (TextDelta, {"agent": "billing", "delta": "Your ref"}))
    point = restore(REQUEST, AGENTS, events)
    assert (point.agent, point.step, point.turn, point.after_seq) == ("billing", "model_turn", 2, len(events) - 1)
    assert point.messages[0] == {"role": "system", "content": "Bill."}
    assert point.messages[-1] == {"role": "tool", "tool_call_id": "c1", "content": '{"assistant":"billing"}'}


def test_a_handoff_reported_without_its_agent_change_is_an_unfinished_tool_phase() -> None:
    events = numbered(STARTED, *turn_with_calls(("c1", "transfer_to_billing")),
                      (Handoff, {"call_id": "c1", "from_agent": "triage", "to_agent": "billing"}))
    point = restore(REQUEST, AGENTS, events)
    assert (point.agent, point.step, point.handoff) == ("triage", "tool_calls", "billing")


def test_a_second_restart_counts_and_voids_only_what_followed_the_first() -> None:
    events = numbered(STARTED, (TextDelta, {"agent": "triage", "delta": "Hal"}),
                      (RunStepRestarted, {"turn": 1, "step": "model_turn", "after_seq": 1, "restart": 1,
                                          "reason": "x", "instance": "b"}),
                      (TextDelta, {"agent": "triage", "delta": "Half"}))
    point = restore(REQUEST, AGENTS, events)
    assert (point.restarts, point.after_seq, point.last_seq) == (1, 3, 4)
    kept = transcript(events)
    assert [e.seq for e in kept] == [1, 3, 4], "the first attempt's text is dropped, the second's kept"


def test_a_client_that_cannot_take_text_back_gets_a_repeated_step_only_past_what_it_has() -> None:
    events = numbered(STARTED, (TextDelta, {"agent": "triage", "delta": "Sunny "}),
                      (TextDelta, {"agent": "triage", "delta": "in Os"}),
                      (RunStepRestarted, {"turn": 1, "step": "model_turn", "after_seq": 1, "restart": 1,
                                          "reason": "x", "instance": "b"}),
                      (TextDelta, {"agent": "triage", "delta": "Sunny in "}),
                      (TextDelta, {"agent": "triage", "delta": "Oslo."}))
    text = Continuation()
    assert "".join(t for e in events if (t := text.feed(e))) == "Sunny in Oslo."
    chunks = ChunkStream()
    assert "".join(c.content for e in events if (c := chunks.chunk(e)) and c.content) == "Sunny in Oslo."


def test_a_restarted_step_that_says_something_else_continues_from_where_the_two_differ() -> None:
    events = numbered(STARTED, (TextDelta, {"agent": "triage", "delta": "Sunny in Os"}),
                      (RunStepRestarted, {"turn": 1, "step": "model_turn", "after_seq": 1, "restart": 1,
                                          "reason": "x", "instance": "b"}),
                      (TextDelta, {"agent": "triage", "delta": "Sunny in Bergen."}))
    text = Continuation()
    assert [text.feed(e) for e in events] == [None, "Sunny in Os", None, "Bergen."]


def test_text_of_the_next_turn_is_never_taken_for_a_repeat() -> None:
    events = numbered(STARTED, *turn_with_calls(("c1", "lookup")),
                      (RunStepRestarted, {"turn": 1, "step": "tool_calls", "after_seq": 6, "restart": 1,
                                          "reason": "x", "instance": "b"}),
                      (ToolOutput, {"call_id": "c1", "name": "lookup", "output": "42"}),
                      (TextDelta, {"agent": "triage", "delta": "Checking. "}))
    text = Continuation()
    assert [t for e in events if (t := text.feed(e))] == ["Checking. ", "Checking. "]
