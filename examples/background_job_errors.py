"""Error Handling / Background Job Error Handling: retry, give up for good, and errors from the scheduler."""

import asyncio
import time
from typing import Any

import msgspec
import nats

import raaf

attempts: dict[str, int] = {}


class SpecificError(Exception):
    pass


async def main() -> None:
    processor = raaf.BackgroundProcessor(queue_name=f"risky_{int(time.time() * 1000)}", retry_count=2,
                                         retry_delay=0.05)

    @processor.handle_job("risky_job")
    async def risky_job(data: dict[str, Any]) -> str:
        attempts[data["kind"]] = attempts.get(data["kind"], 0) + 1
        if data["kind"] == "flaky" and attempts["flaky"] < 3:
            raise SpecificError("try again")  # raised: the job is retried with backoff
        if data["kind"] == "broken":
            raise raaf.PermanentJobError("bad input: no retry")  # straight to the dead-letter store
        return f"done after {attempts[data['kind']]} attempts"

    await processor.start()
    flaky = await processor.enqueue_job("risky_job", {"kind": "flaky"})
    broken = await processor.enqueue_job("risky_job", {"kind": "broken"})
    print(f"flaky: {await processor.job_result(flaky, timeout=20)}")
    try:
        await processor.job_result(broken, timeout=20)
    except raaf.JobFailedError as error:
        print(f"broken: {type(error).__name__} ({error.kind}); attempts={attempts['broken']}")
    dead = await processor.dead_jobs()
    print(f"dead letters: {[msgspec.json.decode(job.data)['kind'] for job in dead]}")

    # The scheduler service answers over NATS; its errors arrive as the seed's classes too
    nc = await nats.connect(str(raaf.configuration().platform.nats_url))
    jobs = raaf.JobsClient(nc, prefix=str(raaf.configuration().platform.prefix))  # the scheduler's queue
    try:
        await jobs.get_job("no-such-job")
    except raaf.NotFoundError as error:
        print(f"scheduler: {type(error).__name__} ({error.kind}) code={error.code.value}")
    await nc.close()
    await processor.stop()


asyncio.run(main())
