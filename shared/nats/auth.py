"""Who a process is on NATS and how it talks to the server: user and password, a creds file, TLS."""

from __future__ import annotations

import json
import re
import ssl
from dataclasses import dataclass
from typing import Any

_PASSWORD_IN_URL = re.compile(r"(://[^:@/]*:)[^@/]*@")


def redacted(url: str) -> str:
    """``url`` with any password in it as ``***``, for logs and error messages."""
    return _PASSWORD_IN_URL.sub(r"\1***@", url)


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """A client's credentials and TLS files (``NATS_USER``, ``NATS_PASSWORD``, ``NATS_CREDS``, ``NATS_TLS_*``).

    Credentials in ``NATS_URL`` (``nats://user:password@host:4222``) work as well and win over these.
    """

    user: str = ""
    password: str = ""
    creds: str = ""  # a .creds file (JWT + nkey seed) for servers run in operator mode
    tls_ca: str = ""  # the CA that signed the server's certificate (the server decides whether TLS is used)
    tls_cert: str = ""  # a client certificate, for servers that verify clients
    tls_key: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca or None)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key or None)
        return context

    def options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's ``Client.connect``."""
        options: dict[str, Any] = {}
        if self.user:
            options["user"] = self.user
            options["password"] = self.password
        if self.creds:
            options["user_credentials"] = self.creds
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        return options


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A nats-server's certificate and key, and the CA it checks client certificates against (``verify``)."""

    cert: str
    key: str
    ca: str = ""
    verify: bool = False

    def server_config(self) -> str:
        block: dict[str, object] = {"cert_file": self.cert, "key_file": self.key}
        if self.ca:
            block["ca_file"] = self.ca
        if self.verify:
            block["verify"] = True
        return "tls: " + json.dumps(block) + "\n"
