"""What every service's ``__main__`` does: read settings, set up logging, run until SIGTERM."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TypeVar

from shared.errors import SettingsError
from shared.service.app import App, ServiceSettings
from shared.service.eventloop import run
from shared.service.logs import configure_logging
from shared.service.supervisor import Supervisor, WorkerPlan
from shared.tracing import install_tracing
from shared.version import VERSION

S = TypeVar("S", bound=ServiceSettings)


def run_service(name: str, load_settings: Callable[[], S], make_app: Callable[[S], App],
                workers: Callable[[S], WorkerPlan] | None = None) -> int:
    """Run one service in this process on the loop ``RAAF_EVENT_LOOP`` names; invalid settings exit 2 with a
    one-line error naming the variable. When ``workers`` plans more than one worker, this process supervises
    them instead (each runs the service's module again, as one worker)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"raaf-{name}: {exc}", file=sys.stderr)
        return 2
    runtime = settings.runtime
    configure_logging(name, runtime.instance_id, runtime.log_level, runtime.log_format)
    plan = workers(settings) if workers is not None else None
    supervise = plan is not None and plan.count > 1
    if not supervise:
        install_tracing(name, runtime.instance_id, VERSION, runtime.tracing)
    try:
        # May load files or modules the settings name; a supervisor checks them too, so that a bad one exits 2
        # here rather than every worker failing and being restarted.
        app = make_app(settings)
    except SettingsError as exc:
        print(f"raaf-{name}: {exc}", file=sys.stderr)
        return 2
    if supervise:
        assert plan is not None
        return run(Supervisor(name, runtime, plan).run(), runtime.event_loop)
    with contextlib.suppress(KeyboardInterrupt):
        run(app.run(), runtime.event_loop)
    return 0
