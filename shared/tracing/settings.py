"""The standard OTEL_* variables this platform reads itself (the SDK and exporter read the rest)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import SettingsError

# The samplers the SDK accepts in OTEL_TRACES_SAMPLER; checked here so a typo stops the service at start.
SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
            "parentbased_traceidratio")


@dataclass(frozen=True, kw_only=True)
class TracingSettings:
    """Tracing is on when an OTLP endpoint is set and the SDK is not disabled; the SDK does the rest."""

    endpoint: str | None = None  # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT
    service_name: str | None = None  # OTEL_SERVICE_NAME; None: raaf-<service>
    sampler: str = "parentbased_always_on"  # OTEL_TRACES_SAMPLER
    sdk_disabled: bool = False  # OTEL_SDK_DISABLED

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None and not self.sdk_disabled

    @classmethod
    def from_environ(cls, raw: dict[str, str | None]) -> TracingSettings:
        """Build from the variables' stripped values (None when unset or empty)."""
        endpoint = raw.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or raw.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            name = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if raw.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    else "OTEL_EXPORTER_OTLP_ENDPOINT")
            raise SettingsError(name, endpoint, "expected an http:// or https:// URL (OTLP over HTTP)")
        sampler = (raw.get("OTEL_TRACES_SAMPLER") or cls.sampler).lower()
        if sampler not in SAMPLERS:
            raise SettingsError("OTEL_TRACES_SAMPLER", sampler, f"expected one of {', '.join(SAMPLERS)}")
        disabled = (raw.get("OTEL_SDK_DISABLED") or "false").lower()
        if disabled not in ("true", "false"):
            raise SettingsError("OTEL_SDK_DISABLED", disabled, "expected true or false")
        return cls(endpoint=endpoint, service_name=raw.get("OTEL_SERVICE_NAME"), sampler=sampler,
                   sdk_disabled=disabled == "true")


VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
             "OTEL_TRACES_SAMPLER", "OTEL_SDK_DISABLED")
