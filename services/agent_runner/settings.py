"""Agent-runner settings from the environment (the seed's ``ASYNC_*`` / ``STREAMING_*`` names, then ``RUN_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.runs.settings import BUFFER_SIZE, CHUNK_SIZE, POOL_SIZE, QUEUE_SIZE, TIMEOUT
from shared.service.settings import Env, RuntimeSettings, Setting
from shared.service.supervisor import MAX_WORKERS, worker_count

# Worker processes per pod; 0: one per CPU of the container (its CPU limit). >1: a supervisor runs them.
WORKERS = Setting("RUN_WORKERS", 1, min=0, max=MAX_WORKERS)


@dataclass(frozen=True, kw_only=True)
class AgentRunnerSettings:
    runtime: RuntimeSettings
    workers: int = WORKERS.default  # worker processes in this pod (RUN_WORKERS=0 resolved to the CPU count)
    pool_size: int = POOL_SIZE.default  # runs executing at once
    queue_size: int = QUEUE_SIZE.default  # accepted runs waiting for a slot; beyond: ``overloaded``
    timeout: float = TIMEOUT.default  # default per-run timeout, seconds from acceptance
    max_timeout: float = 600.0  # the most a request may ask for
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    agents_file: str | None = None  # TOML or JSON declaring agents
    tools_module: str | None = None  # importable module whose functions are the tools
    default_model: str = "gpt-4o-mini"
    max_turns: int = 10
    retry_count: int = 3  # provider retries before the first token
    retry_delay: float = 1.0  # first backoff; doubles per attempt
    retry_max_delay: float = 30.0
    max_retry_count: int = 10  # the most a request may ask for
    max_input_bytes: int = 256 * 1024  # a run request's encoded size (input, history, inline agents)
    max_inline_agents: int = 16
    max_tool_output_bytes: int = 64 * 1024  # longer tool results are cut before the model sees them
    events_max_age: float = 24 * 3600.0  # how long run events stay in JetStream
    events_max_bytes: int = -1
    lease_ttl: float = 6.0  # a runner that stops renewing its lease this long is dead; its runs move on
    max_restarts: int = 2  # how often a run continues on another runner after its runner died; 0: it fails
    provider_max_connections: int = 1000
    demo_token_delay: float = 0.05  # a readable pace: 20 words a second
    stream_processor: str | None = None  # "package.module:Class", a raaf.StreamProcessor applied to text deltas
    chunk_size: int = CHUNK_SIZE.default  # characters of one stored text delta (the processor splits longer)
    buffer_size: int = BUFFER_SIZE.default  # the processor's per-run context window, characters
    handover: bool = True  # on stop, hand queued runs that have not started to another runner
    handover_timeout: float = 2.0  # how long one handover request waits for a runner's answer
    mcp_connect_timeout: float = 10.0  # connecting to an MCP server (and a call waiting for a reconnect)
    mcp_call_timeout: float = 60.0  # one MCP tool call; then the model gets a tool error
    mcp_reconnect_delay: float = 30.0  # the longest wait between attempts to reach a down MCP server
    delta_coalesce: bool = True  # text deltas that arrive while one is being stored go out as one event
    delta_coalesce_ms: float = 0.0  # and also those arriving this long after the first of a batch
    provider_raw_post: bool = True  # ask the model with the SDK's client.post (False: chat.completions.create)
    approval_deadline: float = 3600.0  # seconds a tool call waits for approval unless its rule says; 0: forever
    approval_outcome: Literal["reject", "fail"] = "reject"  # what a deadline does unless its rule says

    @property
    def demo(self) -> bool:
        """No LLM configured: answer with the offline demo model."""
        return self.openai_api_key is None and self.openai_base_url is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentRunnerSettings:
        env = Env(environ)
        return cls(
            runtime=RuntimeSettings.from_env(env, default_http_port=9101),
            workers=worker_count(WORKERS.read(env)),
            pool_size=POOL_SIZE.read(env),
            queue_size=QUEUE_SIZE.read(env),
            timeout=TIMEOUT.read(env),
            max_timeout=env.number("RUN_MAX_TIMEOUT", cls.max_timeout, min=0.1),
            openai_api_key=env.optional("OPENAI_API_KEY"),
            openai_base_url=env.optional("OPENAI_BASE_URL"),
            agents_file=env.optional("RAAF_AGENTS_FILE"),
            tools_module=env.optional("RAAF_TOOLS_MODULE"),
            default_model=env.string("RAAF_DEFAULT_MODEL", cls.default_model),
            max_turns=env.integer("RUN_MAX_TURNS", cls.max_turns, min=1, max=1000),
            retry_count=env.integer("RUN_RETRY_COUNT", cls.retry_count, min=0, max=100),
            retry_delay=env.number("RUN_RETRY_DELAY", cls.retry_delay, min=0, max=600),
            retry_max_delay=env.number("RUN_RETRY_MAX_DELAY", cls.retry_max_delay, min=0, max=3600),
            max_retry_count=env.integer("RUN_MAX_RETRY_COUNT", cls.max_retry_count, min=0, max=100),
            max_input_bytes=env.integer("RUN_MAX_INPUT_BYTES", cls.max_input_bytes, min=64, max=64 * 1024**2),
            max_inline_agents=env.integer("RUN_MAX_INLINE_AGENTS", cls.max_inline_agents, min=0, max=1000),
            max_tool_output_bytes=env.integer("RUN_MAX_TOOL_OUTPUT_BYTES", cls.max_tool_output_bytes, min=64),
            events_max_age=env.number("RUN_EVENTS_MAX_AGE", cls.events_max_age, min=1),
            events_max_bytes=env.integer("RUN_EVENTS_MAX_BYTES", cls.events_max_bytes, min=-1),
            lease_ttl=env.number("RUN_LEASE_TTL", cls.lease_ttl, min=1, max=600),
            max_restarts=env.integer("RUN_MAX_RESTARTS", cls.max_restarts, min=0, max=100),
            provider_max_connections=env.integer("RUN_PROVIDER_MAX_CONNECTIONS", cls.provider_max_connections,
                                                 min=1, max=100_000),
            demo_token_delay=env.number("RUN_DEMO_TOKEN_DELAY", cls.demo_token_delay, min=0, max=10),
            stream_processor=env.optional("RAAF_STREAM_PROCESSOR"),
            chunk_size=CHUNK_SIZE.read(env),
            buffer_size=BUFFER_SIZE.read(env),
            handover=env.boolean("RUN_HANDOVER", cls.handover),
            handover_timeout=env.number("RUN_HANDOVER_TIMEOUT", cls.handover_timeout, min=0.05, max=60),
            mcp_connect_timeout=env.number("MCP_CONNECT_TIMEOUT", cls.mcp_connect_timeout, min=0.1, max=600),
            mcp_call_timeout=env.number("MCP_CALL_TIMEOUT", cls.mcp_call_timeout, min=0.1, max=3600),
            mcp_reconnect_delay=env.number("MCP_RECONNECT_DELAY", cls.mcp_reconnect_delay, min=0.1, max=3600),
            delta_coalesce=env.boolean("RUN_DELTA_COALESCE", cls.delta_coalesce),
            delta_coalesce_ms=env.number("RUN_DELTA_COALESCE_MS", cls.delta_coalesce_ms, min=0, max=1000),
            provider_raw_post=env.boolean("RUN_PROVIDER_RAW_POST", cls.provider_raw_post),
            approval_deadline=env.number("RUN_APPROVAL_DEADLINE", cls.approval_deadline, min=0, max=30 * 86400),
            approval_outcome="fail" if env.choice("RUN_APPROVAL_OUTCOME", cls.approval_outcome,
                                                  ("reject", "fail")) == "fail" else "reject",
        )
