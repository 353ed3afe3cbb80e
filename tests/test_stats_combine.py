"""Combining replicas' figures: own figures add up, shared ones are not counted twice, order never matters."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from proto.stats import (
    BackgroundProcessorStats,
    ChatRoomStats,
    ChatSystemStats,
    InstanceRef,
    InstanceStats,
    MessageQueueStats,
    WebSocketServerStats,
)
from services.metrics.registry import InstanceRegistry
from shared.stats.combine import combine, combine_sections
from shared.stats.gather import KnownInstance

counts = st.integers(min_value=0, max_value=10**9)
gateways = st.builds(WebSocketServerStats, running=st.booleans(), connections=counts, messages_sent=counts,
                     channels=counts)


@given(st.lists(gateways, min_size=1, max_size=8))
def test_gateway_figures_add_up_in_any_order(sections: list[WebSocketServerStats]) -> None:
    combined = combine_sections(WebSocketServerStats, sections)
    assert combined.connections == sum(s.connections for s in sections)
    assert combined.messages_sent == sum(s.messages_sent for s in sections)
    assert combined.channels == max(s.channels for s in sections)
    assert combined.running == any(s.running for s in sections)
    shuffled = list(reversed(sections))
    assert combine_sections(WebSocketServerStats, shuffled) == combined


@given(st.dictionaries(st.text(min_size=1, max_size=10), st.tuples(counts, counts), max_size=6),
       st.integers(min_value=1, max_value=4))
def test_rooms_seen_by_several_chat_replicas_count_once(rooms: dict[str, tuple[int, int]], replicas: int) -> None:
    section = ChatSystemStats(connected_clients=1, total_messages=7, rooms={
        name: ChatRoomStats(participants=p, messages=m) for name, (p, m) in rooms.items()})
    combined = combine_sections(ChatSystemStats, [section] * replicas)
    assert combined.rooms == section.rooms
    assert combined.total_messages == 7
    # Like the rooms, the clients are the fold of the chat's events, which every replica holds whole.
    assert combined.connected_clients == 1


def test_cluster_stats_list_instances_by_service_and_keep_empty_sections_visible() -> None:
    answers = [
        InstanceStats(service="scheduler", instance="a", at=0, background_processor=BackgroundProcessorStats(
            workers=2, high_priority_queue=4)),
        InstanceStats(service="scheduler", instance="b", at=0, background_processor=BackgroundProcessorStats(
            workers=3, high_priority_queue=4)),
        InstanceStats(service="gateway", instance="c", at=0, error="boom"),
    ]
    stats = combine(answers, [InstanceRef(service="chat", instance="gone")])
    assert stats.background_processor.workers == 5
    assert stats.background_processor.high_priority_queue == 4
    assert stats.services == {"gateway": 1, "scheduler": 2}
    assert [(r.instance, r.error) for r in stats.errors] == [("c", "boom")]
    assert [r.instance for r in stats.unanswered] == ["gone"]
    as_json = msgspec.json.decode(msgspec.json.encode(stats))
    assert as_json["async_runner"]["active_runs"] == 0, "zeros are written out, not omitted"


def test_registry_refuses_instances_beyond_its_limit_and_forgets_the_silent() -> None:
    now = [100.0]
    registry = InstanceRegistry(ttl=10, max_instances=2, clock=lambda: now[0])
    assert registry.seen(KnownInstance(service="gateway", instance="a", http_url="http://a"))
    assert registry.seen(KnownInstance(service="gateway", instance="b"))
    assert not registry.seen(KnownInstance(service="gateway", instance="c"))
    assert registry.refused == 1 and len(registry) == 2
    # A lifecycle event without the URL does not erase what discovery knew.
    registry.seen(KnownInstance(service="gateway", instance="a"))
    assert registry.instances()[0][0].http_url == "http://a"
    now[0] += 5
    registry.touch("gateway", "a")
    now[0] += 6
    assert [k.instance for k in registry.expire()] == ["b"]
    assert ("gateway", "a") in registry and ("gateway", "b") not in registry


@given(st.dictionaries(st.text(min_size=1, max_size=10), counts, min_size=1, max_size=6),
       st.integers(min_value=1, max_value=4))
def test_message_queues_count_once_each_however_many_processes_report_them(
        pending: dict[str, int], instances_per_queue: int) -> None:
    sections = [MessageQueueStats(queues=1, pending=length, processed=1, pending_by_queue={key: length})
                for key, length in pending.items() for _ in range(instances_per_queue)]
    combined = combine_sections(MessageQueueStats, sections)
    assert combined.queues == len(pending)
    assert combined.pending == sum(pending.values())
    assert combined.processed == len(sections)
    assert combine_sections(MessageQueueStats, list(reversed(sections))) == combined


def test_message_queue_sections_from_older_reporters_still_combine_by_the_largest() -> None:
    old = [MessageQueueStats(queues=1, pending=5), MessageQueueStats(queues=1, pending=3)]
    assert combine_sections(MessageQueueStats, old) == MessageQueueStats(queues=1, pending=5)


def test_the_stats_text_lists_each_queue_under_its_section() -> None:
    from proto.stats import ClusterStats
    from raaf.stats_report import render_stats

    queues = MessageQueueStats(queues=2, pending=7, pending_by_queue={"raaf:mq:a": 5, "raaf:mq:b": 2})
    text = render_stats(ClusterStats(services={"message-queue": 2}, unanswered=[], errors=[], at=0.0,
                                     message_queue=queues))
    section = text.split("message_queue\n", 1)[1]
    assert "\n  pending_by_queue\n    raaf:mq:a" in section and "raaf:mq:b" in section
    assert "{" not in text
