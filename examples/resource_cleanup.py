"""Best Practices / Resource Management: start what you need, and always stop it (drains in-flight work)."""

import asyncio
import time

import raaf


async def run_application(server: raaf.WebSocketServer, processor: raaf.BackgroundProcessor,
                          async_runner: raaf.AsyncRunner) -> None:
    task_id = async_runner.process_async("assistant", "Working")
    result = (await async_runner.wait_for_tasks([task_id], timeout=30))[task_id]
    print(f"application ran: {getattr(result, 'output', result)}")
    print(f"server running: {server.running}, processor running: {processor.running}")


async def main() -> None:
    websocket_server = raaf.WebSocketServer(port=0, host="127.0.0.1")
    background_processor = raaf.BackgroundProcessor(queue_name=f"cleanup_{int(time.time() * 1000)}")
    background_processor.handle_job("noop", lambda data: None)
    async_runner = raaf.AsyncRunner()
    try:
        await websocket_server.start()
        await background_processor.start()
        # Run application
        await run_application(websocket_server, background_processor, async_runner)
    finally:
        # Always cleanup resources: each stops taking work, then finishes or hands back what it holds
        await websocket_server.stop()
        await background_processor.stop()
        await async_runner.close()
    print(f"after cleanup: server running: {websocket_server.running}, "
          f"processor running: {background_processor.running}")

    # Or let `async with` do it
    async with raaf.AsyncRunner() as pool, raaf.EventEmitter() as emitter:
        print(f"inside async with: emitter connected: {emitter.connected}, pool size: {pool.pool_size > 0}")
    print(f"after async with: emitter connected: {emitter.connected}")


asyncio.run(main())
