"""NATS itself as a trust boundary: each service's user may write only what it owns, no user no connection, TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS

from proto.subjects import Subjects
from services.chat.store import chat_streams
from shared.devstack.servers import NatsServer
from shared.nats.auth import NatsAuth
from shared.nats.conn import barrier, connect_nats
from shared.nats.jetstream import ensure_stream
from shared.nats.permissions import ANY_PREFIX, ROLES, NatsUsers, permissions
from shared.runs.log import run_stream_config
from tests.support.env import unique_prefix
from tests.support.tls import make_certificates
from tests.support.waiting import eventually


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with the users a deployment of one prefix gets (``raaf nats-config``)."""
    server = NatsServer(tmp_path / "nats", users=NatsUsers.generate(unique_prefix("perm")))
    server.start()
    yield server
    server.stop()


class Recorder:
    """A connection as one role that keeps the errors the server sends it (permission violations)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def connect(self, url: str) -> NATS:
        async def error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        return await nats.connect(url, error_cb=error, allow_reconnect=False)

    def refused(self, subject: str) -> bool:
        return any("permissions violation" in e and subject.lower() in e for e in self.errors)


async def stored(nc: NATS, stream: str, subject: str) -> int:
    info = await nc.jetstream().stream_info(stream, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def provision(server: NatsServer, s: Subjects) -> None:
    admin = await nats.connect(server.url)
    try:
        js = admin.jetstream()
        await ensure_stream(js, run_stream_config(s, max_age=60))
        for config in chat_streams(s, history_size=10, replicas=1):
            await ensure_stream(js, config)
    finally:
        await admin.close()


async def test_nats_perm_the_gateway_user_cannot_write_run_events_or_chat_log_entries_that_their_owners_can(
    guarded: NatsServer,
) -> None:
    assert guarded.users is not None
    s = Subjects(guarded.users.prefix)
    await provision(guarded, s)
    run_subject, log_subject = s.run_events("perm-run"), s.chat_room_log("perm-room")
    gateway = Recorder()
    nc = await gateway.connect(guarded.url_for("gateway"))
    try:
        await nc.publish(run_subject, b'{"type":"run_completed","seq":1}')
        await nc.publish(log_subject, b'{"type":"message","text":"forged"}')
        await barrier(nc)
        await eventually(lambda: gateway.refused(run_subject) and gateway.refused(log_subject), 5,
                         what="the server refusing both publishes")
    finally:
        await nc.close()
    for role, subject in (("agent-runner", run_subject), ("chat", log_subject)):
        owner = await nats.connect(guarded.url_for(role))
        try:
            await owner.jetstream().publish(subject, b"{}")  # the owner's write is stored: the test can fail
        finally:
            await owner.close()
    admin = await nats.connect(guarded.url)
    try:
        assert await stored(admin, s.stream_name("runs"), run_subject) == 1, "only the agent-runner's event"
        assert await stored(admin, s.stream_name("chat"), log_subject) == 1, "only the chat service's entry"
    finally:
        await admin.close()


async def test_nats_perm_the_gateway_user_cannot_purge_the_chat_log_or_delete_a_stream(guarded: NatsServer) -> None:
    assert guarded.users is not None
    s = Subjects(guarded.users.prefix)
    await provision(guarded, s)
    nc = await nats.connect(guarded.url_for("gateway"), allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=1)
        with pytest.raises(nats.errors.TimeoutError):  # the server drops the request: no one answers
            await js.purge_stream(s.stream_name("chat"))
        for kind in ("runs", "chat"):
            with pytest.raises(nats.errors.TimeoutError):
                await js.delete_stream(s.stream_name(kind))
        info = await js.stream_info(s.stream_name("runs"))  # reading is allowed
        assert info.config.name == s.stream_name("runs")
    finally:
        await nc.close()


async def test_nats_perm_a_client_without_credentials_or_with_a_wrong_password_cannot_connect(
    guarded: NatsServer,
) -> None:
    for url in (guarded.address, guarded.address.replace("nats://", "nats://gateway:wrong@")):
        with pytest.raises((nats.errors.Error, OSError)) as caught:
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
        assert "authorization" in str(caught.value).lower() or isinstance(caught.value, nats.errors.NoServersError)
    nc = await nats.connect(guarded.url_for("gateway"), allow_reconnect=False)
    await nc.close()


async def test_nats_perm_a_service_connects_with_nats_user_and_nats_password(guarded: NatsServer) -> None:
    assert guarded.users is not None
    auth = NatsAuth(user="metrics", password=guarded.users.passwords["metrics"])
    nc = await connect_nats(guarded.address, name="perm-metrics", auth=auth, max_initial_wait=0.2)
    try:
        assert nc.is_connected
    finally:
        await nc.close()


@pytest.mark.parametrize("prefix", ["permdoc", ANY_PREFIX])
def test_nats_perm_only_the_owners_are_granted_run_events_and_chat_log_entries_and_the_rest_are_denied_them(
    prefix: str,
) -> None:
    s = Subjects("permdoc")
    for store, owner in ((s.run_events_all, "agent-runner"), (s.chat_room_logs_all, "chat")):
        pattern = prefix + store.removeprefix("permdoc")
        granted = {role for role in ROLES if {pattern, ">"} & set(permissions(role, prefix).publish)}
        assert granted == {owner, "admin"}
        denied = {role for role in ROLES if pattern in permissions(role, prefix).publish_deny}
        assert denied == set(ROLES) - {owner, "admin"}


async def test_nats_perm_over_tls_a_client_with_the_ca_connects_and_a_plain_one_cannot(tmp_path: Path) -> None:
    files = make_certificates(tmp_path / "tls")
    users = NatsUsers.generate(unique_prefix("tls"))
    server = NatsServer(tmp_path / "nats", users=users, tls=files)
    server.start()
    try:
        auth = NatsAuth(user="gateway", password=users.passwords["gateway"], tls_ca=files.ca)
        nc = await connect_nats(server.address, name="perm-tls", auth=auth, max_initial_wait=0.2)
        try:
            await barrier(nc)  # a round trip over the TLS connection
        finally:
            await nc.close()
        with pytest.raises((nats.errors.Error, OSError)):  # the server's certificate is not one it trusts
            await nats.connect(server.url_for("gateway"), allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=2)
    finally:
        server.stop()
