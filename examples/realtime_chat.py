"""Core Components / 6. Real-time Chat: rooms with agents, handoffs, history and the seed's chat stats."""

import asyncio
import time

import raaf
from proto.chat import AgentMessage, AnswerDelta

primary_agent = raaf.Agent(name="concierge", instructions="You greet people and route them.")
support_agent = raaf.Agent(name="support", instructions="You solve problems.")
technical_agent = raaf.Agent(name="technical", instructions="You answer technical questions.")
sales_agent = raaf.Agent(name="sales", instructions="You sell.")


async def main() -> None:
    # Create chat system with multiple agents. run_services=False: a client of the running platform
    # (`make run`); with the default True it starts its own gateway, chat service and agent runner.
    chat = raaf.RealTimeChat(agent=primary_agent, run_services=False)

    # Add specialist agents for handoffs
    chat.add_agent(support_agent)
    chat.add_agent(technical_agent)
    chat.add_agent(sales_agent)

    # Create chat rooms (names stamped so a second run starts with empty rooms)
    run = int(time.time() * 1000)
    general = await chat.create_room(f"General Support {run}", {"max_participants": 50, "message_history": 100})
    await chat.create_room(f"Technical Discussion {run}", {"max_participants": 20, "message_history": 200,
                                                          "restricted": True})

    # Configure chat features
    def settings(config: object) -> None:
        config.enable_handoffs = True  # type: ignore[attr-defined]
        config.max_message_length = 2000  # type: ignore[attr-defined]
        config.rate_limit = 60  # type: ignore[attr-defined]  # messages per minute

    chat.configure(settings)

    # Start chat (opens the rooms on the chat service)
    await chat.start()

    # A participant talks to the room's agent; every participant sees the same events in the same order
    alice = await general.join("alice")
    await alice.send("Hello, I need help")
    answer = ""
    async with asyncio.timeout(20):
        async for room_event in alice.events():
            match room_event.event:
                case AnswerDelta(delta=delta):
                    answer += delta
                case AgentMessage(text=text, agent=agent):
                    print(f"{agent} answered: {text}")
                    break
    print(f"streamed: {answer}")

    # Hand the room over to a specialist
    info = await alice.handoff("technical", reason="a technical question")
    print(f"room agent after handoff: {info.agent}")

    history = await general.history("alice")
    print("history: " + " | ".join(type(m).__name__ for m in history))
    await alice.leave()

    # Monitor chat statistics (the seed's shape)
    stats = await chat.stats()
    rooms = {name.rsplit(" ", 1)[0]: figures for name, figures in stats["rooms"].items() if name.endswith(str(run))}
    print(f"rooms: {sorted(rooms)}")
    print(f"General Support messages: {rooms['General Support']['messages']}")
    await chat.stop()


asyncio.run(main())
