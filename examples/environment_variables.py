"""Configuration / Environment Variables: the seed's variable names, read by the services and by raaf."""

import os
import subprocess
import sys

import raaf

# What the seed exports (a shell would `export` them; the services read the same names)
SEED_ENVIRONMENT = {
    # Redis configuration
    "REDIS_URL": "redis://localhost:6379",
    "REDIS_POOL_SIZE": "20",
    # WebSocket configuration
    "WEBSOCKET_PORT": "8080",
    "WEBSOCKET_HOST": "0.0.0.0",
    "WEBSOCKET_MAX_CONNECTIONS": "5000",
    # Async processing
    "ASYNC_POOL_SIZE": "20",
    "ASYNC_QUEUE_SIZE": "1000",
    # Background processing
    "BACKGROUND_WORKERS": "10",
    "BACKGROUND_RETRY_COUNT": "3",
    # Streaming configuration
    "STREAMING_CHUNK_SIZE": "1024",
    "STREAMING_BUFFER_SIZE": "8192",
    "STREAMING_TIMEOUT": "60",
}

config = raaf.Config(SEED_ENVIRONMENT)
print(f"background.pool_size (REDIS_POOL_SIZE) = {config.background.pool_size}")
print(f"websocket.max_connections (WEBSOCKET_MAX_CONNECTIONS) = {config.websocket.max_connections}")
print(f"async.queue_size (ASYNC_QUEUE_SIZE) = {config.async_.queue_size}")
print(f"streaming.buffer_size (STREAMING_BUFFER_SIZE) = {config.streaming.buffer_size}")

# Precedence: defaults < environment < raaf.configure(...), in a fresh process
script = ("import raaf; print('from the environment:', raaf.configuration().async_.pool_size); "
          "raaf.configure(async_={'pool_size': 64}); print('after configure:', raaf.configuration().async_.pool_size)")
child = subprocess.run([sys.executable, "-c", script], env={**os.environ, "ASYNC_POOL_SIZE": "32"},
                       capture_output=True, text=True, check=True)
print(child.stdout.strip())

# A bad value names its variable
try:
    raaf.Config({"WEBSOCKET_PORT": "abc"})
except raaf.ConfigurationError as error:
    print(f"ConfigurationError: {error}")

# A service started with a bad value stops at once with one line naming the variable
child = subprocess.run([sys.executable, "-m", "services.gateway"], env={**os.environ, "WEBSOCKET_PORT": "abc"},
                       capture_output=True, text=True, check=False)
print(f"gateway exit status {child.returncode}: {'WEBSOCKET_PORT' in child.stderr}")
