"""Core Components / 5. Event Emitter: publish/subscribe over NATS, wildcards, once, wait, filter and map."""

import asyncio
import time

import msgspec

import raaf


async def main() -> None:
    # Stamp this run's event names, so a second run does not see the first one's history.
    run = f"r{int(time.time() * 1000)}"
    async with raaf.EventEmitter(max_listeners=50, enable_wildcards=True, enable_history=True) as emitter:
        seen: list[str] = []

        # Add event listeners
        await emitter.on(f"{run}.agent.response",
                         lambda event: seen.append(f"Agent responded: {event.data['content']}"))

        # Wildcard listeners for pattern matching (`*`: one token, `**`: any number)
        await emitter.on(f"{run}.user.*", lambda event: seen.append(f"User event: {event.event.split('.', 1)[1]}"))

        # One-time listeners
        await emitter.once(f"{run}.system.startup",
                           lambda event: seen.append(f"System started at {event.data['timestamp']}"))

        # Wait for specific events (started before the emit it waits for)
        waiting = asyncio.create_task(emitter.wait_for_event(f"{run}.user.login", timeout=10))
        await asyncio.sleep(0.1)

        # Emit events (confirmed stored in JetStream before emit returns)
        await emitter.emit(f"{run}.user.login", {"user_id": "user123", "ip_address": "192.168.1.100"})
        await emitter.emit(f"{run}.agent.response", {"content": "Hello!"})
        await emitter.emit(f"{run}.system.startup", {"timestamp": "2024-01-01T00:00:00Z"})
        await emitter.emit(f"{run}.system.startup", {"timestamp": "again: ignored by the once listener"})

        # Async event emission
        future = emitter.emit_async(f"{run}.heavy.processing", {"data": [1, 2, 3], "process_id": "proc123"})
        await future

        event = await waiting
        print(f"waited for: {event.event.split('.', 1)[1]} {event.data}")
        await asyncio.sleep(0.3)
        print("\n".join(sorted(seen)))

        # Event filtering and mapping: derived emitters
        high = emitter.filter(lambda event: (event.data or {}).get("priority") == "high")
        upper = high.map(lambda e: msgspec.structs.replace(e, data={k.upper(): v for k, v in e.data.items()}))
        got: list[object] = []
        await upper.on(f"{run}.task.*", lambda event: got.append(event.data))
        await emitter.emit(f"{run}.task.a", {"priority": "low", "n": 1})
        await emitter.emit(f"{run}.task.b", {"priority": "high", "n": 2})
        await asyncio.sleep(0.3)
        print(f"filtered and mapped: {got}")

        # History from JetStream
        history = await emitter.history(f"{run}.user.*", limit=10)
        print(f"history: {[e.event.split('.', 1)[1] for e in history]}")


asyncio.run(main())
