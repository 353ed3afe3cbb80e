"""``raaf.configure(...)`` and ``raaf.configuration()``, the seed's configuration sections (``shared.config``)."""

from shared.config import (
    SCHEMA,
    Config,
    Key,
    Section,
    Value,
    configuration,
    configure,
    reset_configuration,
)
from shared.service.overrides import configured_environ

__all__ = [
    "SCHEMA",
    "Config",
    "Key",
    "Section",
    "Value",
    "configuration",
    "configure",
    "configured_environ",
    "reset_configuration",
]
