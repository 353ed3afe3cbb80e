"""Configuration / Global Configuration: the seed's sections and keys, one precedence rule, clear errors."""

import raaf


def settings(config: raaf.Config) -> None:
    # WebSocket server settings
    config.websocket.port = 8080
    config.websocket.host = "0.0.0.0"
    config.websocket.max_connections = 5000
    config.websocket.heartbeat_interval = 30
    config.websocket.enable_compression = True

    # Streaming settings
    config.streaming.chunk_size = 1024
    config.streaming.buffer_size = 8192
    config.streaming.timeout = 60
    config.streaming.enable_sse = True

    # Async processing settings (`async` is a Python keyword: `async_`)
    config.async_.pool_size = 20
    config.async_.queue_size = 1000

    # Background processing settings
    config.background.redis_url = "redis://localhost:6379"
    config.background.workers = 10
    config.background.retry_count = 3
    config.background.retry_delay = 5

    # Event system settings
    config.events.max_listeners = 100
    config.events.enable_wildcards = True
    config.events.history_size = 1000

    # Chat system settings
    config.chat.max_rooms = 100
    config.chat.max_participants_per_room = 50
    config.chat.message_history_size = 500
    config.chat.enable_typing_indicators = True


raaf.configure(settings)
# or, section by section:
raaf.configure(streaming={"chunk_size": 512}, async_={"pool_size": 8})

config = raaf.configuration()
print(f"websocket.max_connections = {config.websocket.max_connections}")
print(f"streaming.chunk_size = {config.streaming.chunk_size}")
print(f"async.pool_size = {config.async_.pool_size}")
print(f"background.redis_url = {config.background.redis_url}")

# The same settings as the services' environment variables (what `raaf up` or a Kubernetes manifest sets)
env = config.to_env()
print(f"as environment: STREAMING_CHUNK_SIZE={env['STREAMING_CHUNK_SIZE']} ASYNC_POOL_SIZE={env['ASYNC_POOL_SIZE']} "
      f"REDIS_URL={env['REDIS_URL']}")

# The Python API reads its defaults from it
print(f"StreamProcessor chunk_size: {raaf.StreamProcessor().chunk_size}")
print(f"AsyncRunner pool_size: {raaf.AsyncRunner().pool_size}")

# An unknown key or a bad value is a clear error, and changes nothing
for bad in ({"websocket": {"prot": 8080}}, {"websocket": {"port": "eighty"}}, {"background": {"workers": 0}}):
    try:
        raaf.configure(**bad)
    except raaf.ConfigurationError as error:
        print(f"ConfigurationError: {error}")
