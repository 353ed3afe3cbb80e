"""The standard OTEL_* variables this platform reads itself (the SDK and exporter read the rest)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import invalid_setting

# The samplers the SDK accepts in OTEL_TRACES_SAMPLER; checked here so a typo stops the service at start.
SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
            "parentbased_traceidratio")


@dataclass(frozen=True, kw_only=True)
class TracingSettings:
    """Tracing is on when an OTLP endpoint is set and the SDK is not disabled; the SDK does the rest."""

    # The traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces.
    endpoint: str | None = None
    service_name: str | None = None  # OTEL_SERVICE_NAME; None: raaf-<service>
    sampler: str = "parentbased_always_on"  # OTEL_TRACES_SAMPLER
    sdk_disabled: bool = False  # OTEL_SDK_DISABLED

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None and not self.sdk_disabled

    @classmethod
    def from_environ(cls, raw: dict[str, str | None]) -> TracingSettings:
        """Build from the variables' stripped values (None when unset or empty)."""
        traces, base = raw.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), raw.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        for name, url in (("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces), ("OTEL_EXPORTER_OTLP_ENDPOINT", base)):
            if url is not None and not url.startswith(("http://", "https://")):
                raise invalid_setting(name, url, "expected an http:// or https:// URL (OTLP over HTTP)")
        # As the exporter reads them: the signal's own URL as it is, the base URL with the signal's path added.
        endpoint = traces or (None if base is None else base.rstrip("/") + "/v1/traces")
        sampler = (raw.get("OTEL_TRACES_SAMPLER") or cls.sampler).lower()
        if sampler not in SAMPLERS:
            raise invalid_setting("OTEL_TRACES_SAMPLER", sampler, f"expected one of {', '.join(SAMPLERS)}")
        disabled = (raw.get("OTEL_SDK_DISABLED") or "false").lower()
        if disabled not in ("true", "false"):
            raise invalid_setting("OTEL_SDK_DISABLED", disabled, "expected true or false")
        return cls(endpoint=endpoint, service_name=raw.get("OTEL_SERVICE_NAME"), sampler=sampler,
                   sdk_disabled=disabled == "true")


VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
             "OTEL_TRACES_SAMPLER", "OTEL_SDK_DISABLED")
