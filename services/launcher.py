"""Run any service by name and probe a running one: the container image's single entrypoint."""

from __future__ import annotations

import argparse
import runpy
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from services.agent_runner.settings import AgentRunnerSettings
from services.chat.settings import ChatSettings
from services.gateway.settings import GatewaySettings
from services.metrics.settings import MetricsSettings
from services.scheduler.settings import SchedulerSettings
from shared.devstack.stack import ServiceSpec
from shared.errors import SettingsError
from shared.service.app import ServiceSettings


@dataclass(frozen=True)
class ServiceEntry:
    """One runnable service: its name (as in ``raaf up``, compose and Kubernetes), module, settings and the
    variable that names its HTTP port."""

    name: str
    module: str
    load_settings: Callable[[Mapping[str, str] | None], ServiceSettings]
    port_var: str = "HTTP_PORT"

    @property
    def spec(self) -> ServiceSpec:
        """What ``raaf up`` needs to run it as a child process."""
        return ServiceSpec(self.name, self.module, self.port_var, self.load_settings({}).runtime.http_port)


# The one list of the platform's services: the image's entrypoint, ``raaf up`` and the deploy tests read it.
SERVICES: dict[str, ServiceEntry] = {
    entry.name: entry
    for entry in (
        ServiceEntry("gateway", "services.gateway", GatewaySettings.from_env, "WEBSOCKET_PORT"),
        ServiceEntry("agent-runner", "services.agent_runner", AgentRunnerSettings.from_env),
        ServiceEntry("chat", "services.chat", ChatSettings.from_env),
        ServiceEntry("scheduler", "services.scheduler", SchedulerSettings.from_env),
        ServiceEntry("metrics", "services.metrics", MetricsSettings.from_env),
    )
}


def stack_services() -> tuple[ServiceSpec, ...]:
    """Every service, in start order, as ``raaf up`` runs them."""
    return tuple(entry.spec for entry in SERVICES.values())


PROBES = {"ready": "/readyz", "live": "/healthz"}


def find_service(name: str) -> ServiceEntry:
    """The service called ``name`` (``agent_runner`` is accepted for ``agent-runner``)."""
    entry = SERVICES.get(name.replace("_", "-"))
    if entry is None:
        raise argparse.ArgumentTypeError(f"unknown service {name!r}; expected one of {', '.join(SERVICES)}")
    return entry


def probe_url(entry: ServiceEntry, probe: str) -> str:
    """Where this process's settings say the service serves ``probe`` (a wildcard host probes loopback)."""
    runtime = entry.load_settings(None).runtime
    host = runtime.http_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{runtime.http_port}{PROBES[probe]}"


def check(entry: ServiceEntry, probe: str, timeout: float) -> tuple[bool, str]:
    """Ask the running service for its liveness or readiness; ``(ok, one-line reason)``."""
    url = probe_url(entry, probe)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, f"{url}: {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code} {exc.read(500).decode(errors='replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return False, f"{url}: {reason}"


def _parser() -> argparse.ArgumentParser:
    names = ", ".join(SERVICES)
    parser = argparse.ArgumentParser(
        prog="python -m services",
        description=f"Run one RAAF Streaming service ({names}) in this process, or check a running one. "
        "Settings come from the environment (see docs/deploy.md); with RUN_WORKERS=N > 1 the agent-runner's "
        "process supervises N worker processes behind its one HTTP port (docs/runs.md).",
        epilog="examples: python -m services gateway | python -m services check gateway --probe live",
    )
    parser.add_argument("service", metavar="SERVICE|check", help=f"the service to run: {names}; or 'check'")
    parser.add_argument("target", nargs="?", help="with 'check': the service to probe")
    parser.add_argument("--probe", choices=tuple(PROBES), default="ready",
                        help="with 'check': ready (/readyz, the default) or live (/healthz)")
    parser.add_argument("--timeout", type=float, default=3.0, help="with 'check': seconds to wait (3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.service == "check":
            if args.target is None:
                parser.error("check needs the service to probe, e.g. 'check gateway'")
            entry = find_service(args.target)
            ok, reason = check(entry, args.probe, args.timeout)
            print(f"{entry.name} {args.probe}: {'ok' if ok else 'FAIL'} ({reason})",
                  file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        if args.target is not None:
            parser.error(f"unexpected argument {args.target!r}")
        entry = find_service(args.service)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except SettingsError as exc:
        print(f"raaf-{args.target or args.service}: {exc}", file=sys.stderr)
        return 2
    # The service's own __main__ runs in this process (PID 1 in a container), so SIGTERM reaches it directly.
    sys.argv = [entry.module]
    runpy.run_module(entry.module, run_name="__main__", alter_sys=True)
    return 0
