"""The NATS cluster and Redis configs from k8s/ run on real servers: a JetStream cluster forms, jobs survive a crash."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import redis
from nats.js.api import StreamConfig

from shared.devstack.servers import find_nats_server, find_valkey_server, free_port
from shared.nats.permissions import ROLES, NatsUsers, password_variable
from tests.deploy import kustomize
from tests.deploy.kustomize import find, pod_spec
from tests.deploy.servers import ConfiguredServer, assert_jobs_survive_a_crash
from tests.deploy.settings_catalog import ROOT
from tests.support.waiting import eventually

RESOURCES = kustomize.build(ROOT / "k8s")
NATS_SET = find(RESOURCES, "StatefulSet", "nats")
NATS_CONF = find(RESOURCES, "ConfigMap", "nats-config")["data"]["nats.conf"]
AUTH_CONF = find(RESOURCES, "ConfigMap", "nats-config")["data"]["auth.conf"]
# What the Secret raaf-nats-auth gives the NATS pods (the repository's copy is empty: an overlay sets it).
PASSWORDS = NatsUsers.generate("raaf")
PASSWORD_ENV = {password_variable(role): password for role, password in PASSWORDS.passwords.items()}
REDIS_DATA = find(RESOURCES, "ConfigMap", "redis-config")["data"]
REDIS_CONF = REDIS_DATA["valkey.conf"]


def _container_port(pod: dict[str, Any], name: str) -> int:
    (container,) = pod["containers"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_the_config_mount_and_command_agree() -> None:
    pod = pod_spec(NATS_SET)
    (container,) = pod["containers"]
    config_path = container["command"][container["command"].index("--config") + 1]
    (mount,) = [m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "nats-config"
    assert config_path.rsplit("/", 1)[1] == "nats.conf"
    data = [m for m in container["volumeMounts"] if m["name"] == "data"]
    assert [c["metadata"]["name"] for c in NATS_SET["spec"]["volumeClaimTemplates"]] == ["data"]
    assert re.search(rf"store_dir: {data[0]['mountPath']}/", NATS_CONF)
    pid_file = re.search(r"pid_file: (\S+)", NATS_CONF)
    assert pid_file and container["lifecycle"]["preStop"]["exec"]["command"][-1] == f"ldm={pid_file.group(1)}"


def test_routes_name_every_pod_through_the_headless_service() -> None:
    spec = NATS_SET["spec"]
    headless = find(RESOURCES, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert spec["podManagementPolicy"] == "Parallel"
    cluster_port = _container_port(pod_spec(NATS_SET), "cluster")
    routes = re.findall(r"nats://(\S+)", NATS_CONF.split("cluster {", 1)[1])
    assert routes == [f"{NATS_SET['metadata']['name']}-{i}.{spec['serviceName']}:{cluster_port}"
                      for i in range(spec["replicas"])]
    for name, port in (("client", 4222), ("cluster", 6222), ("monitor", 8222)):
        assert _container_port(pod_spec(NATS_SET), name) == port
        assert f"0.0.0.0:{port}" in NATS_CONF


def test_nats_server_accepts_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text(NATS_CONF)
    (tmp_path / "auth.conf").write_text(AUTH_CONF)
    result = subprocess.run([find_nats_server(), "-c", str(conf), "-t"], capture_output=True, text=True,
                            env={**os.environ, "SERVER_NAME": "nats-0", **PASSWORD_ENV}, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_the_nats_users_are_raaf_nats_config_and_each_password_comes_from_the_secret() -> None:
    assert NatsUsers(PASSWORDS.passwords, "raaf").config(env_refs=True) == AUTH_CONF
    assert (ROOT / "deploy/nats/auth.conf").read_text() == AUTH_CONF, "compose mounts the same users"
    (container,) = pod_spec(NATS_SET)["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {password_variable(role) for role in ROLES}
    assert all(ref["name"] == "raaf-nats-auth" and ref["key"] == name for name, ref in refs.items())
    secret = find(RESOURCES, "Secret", "raaf-nats-auth")["data"]
    assert set(secret) == set(refs) and not any(base64.b64decode(v) for v in secret.values()), "none committed"


def test_the_nats_container_refuses_to_start_while_a_password_is_empty(tmp_path: Path) -> None:
    (container,) = pod_spec(NATS_SET)["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    (tmp_path / "auth.conf").write_text(AUTH_CONF)
    script = container["command"][2].replace("/etc/nats-config/", f"{tmp_path}/").replace("exec nats-server",
                                                                                          "exec echo started")
    argv = ["sh", "-c", script, *container["command"][3:]]
    one_empty = {**PASSWORD_ENV, password_variable("chat"): ""}
    refused = subprocess.run(argv, capture_output=True, text=True, env={"PATH": os.environ["PATH"], **one_empty},
                             timeout=10, check=False)
    assert refused.returncode == 1 and "RAAF_NATS_CHAT_PASSWORD is empty" in refused.stderr
    started = subprocess.run(argv, capture_output=True, text=True, env={"PATH": os.environ["PATH"], **PASSWORD_ENV},
                             timeout=10, check=False)
    assert started.returncode == 0 and started.stdout.strip() == "started --config /etc/nats-config/nats.conf"


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[tuple[ConfiguredServer, int]]]:
    """The StatefulSet's servers on this machine: the same config, pod names and routes mapped to local ports."""
    replicas = NATS_SET["spec"]["replicas"]
    ports = [{"client": free_port(), "cluster": free_port(), "monitor": free_port()} for _ in range(replicas)]
    servers = []
    for i in range(replicas):
        text = NATS_CONF
        for j in range(replicas):
            text = text.replace(f"nats-{j}.nats-headless:6222", f"127.0.0.1:{ports[j]['cluster']}")
        text = (text.replace("0.0.0.0:4222", f"127.0.0.1:{ports[i]['client']}")
                .replace("0.0.0.0:6222", f"127.0.0.1:{ports[i]['cluster']}")
                .replace("0.0.0.0:8222", f"127.0.0.1:{ports[i]['monitor']}")
                .replace("/data/", f"{tmp_path}/data-{i}/")
                .replace("/var/run/nats/", f"{tmp_path}/run-{i}-"))
        conf = tmp_path / f"nats-{i}.conf"
        conf.write_text(text)
        (tmp_path / "auth.conf").write_text(AUTH_CONF)
        server = ConfiguredServer(["env", f"SERVER_NAME=nats-{i}",
                                   *(f"{name}={value}" for name, value in PASSWORD_ENV.items()),
                                   find_nats_server(), "-c", str(conf)],
                                  tmp_path / f"log-{i}", ports[i]["client"])
        servers.append((server, ports[i]["monitor"]))
    for server, _ in servers:
        server.start()
    yield servers
    for server, _ in servers:
        server.kill()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def test_the_cluster_forms_and_keeps_a_replicated_stream_through_a_lost_server(
    nats_cluster: list[tuple[ConfiguredServer, int]],
) -> None:
    await eventually(lambda: all(_healthy(monitor) for _, monitor in nats_cluster), 30, interval=0.2,
                     what="the JetStream cluster becoming healthy")
    admin = PASSWORDS.passwords["admin"]
    urls = [f"nats://admin:{admin}@127.0.0.1:{server.port}" for server, _ in nats_cluster]
    nc = await nats.connect(servers=urls, reconnect_time_wait=0.2, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream(timeout=5)
        for attempt in range(50):  # the meta leader may still be settling
            try:
                info = await js.add_stream(StreamConfig(name="DEPLOYCHECK", subjects=["deploycheck.>"],
                                                        num_replicas=3))
                break
            except Exception:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.name == "raaf"
        assert {info.cluster.leader, *(r.name for r in info.cluster.replicas or [])} == {"nats-0", "nats-1", "nats-2"}
        await js.publish("deploycheck.a", b"1")
        # The pod disruption budget allows one server down at a time: the stream must keep taking writes.
        nats_cluster[2][0].kill()
        for attempt in range(50):
            try:
                await js.publish("deploycheck.b", b"2")
                break
            except Exception:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        state = await js.stream_info("DEPLOYCHECK")
        assert state.state.messages == 2
        assert state.cluster is not None and state.cluster.leader in ("nats-0", "nats-1")
    finally:
        await nc.close()


def test_redis_config_runs_and_keeps_jobs_across_a_crash(tmp_path: Path) -> None:
    port = free_port()
    text = re.sub(r"^port \d+$", f"port {port}", REDIS_CONF, flags=re.M)
    text = text.replace("bind * -::*", "bind 127.0.0.1").replace("dir /data", f"dir {tmp_path}")
    conf = tmp_path / "valkey.conf"
    conf.write_text(text)
    assert "exec valkey-server /etc/valkey/valkey.conf" in REDIS_DATA["start-valkey.sh"]
    server = ConfiguredServer([find_valkey_server(), str(conf)], tmp_path, port)
    server.start()
    try:
        assert_jobs_survive_a_crash(server)
    finally:
        server.kill()


def test_nats_termination_grace_covers_lame_duck_mode() -> None:
    def seconds(key: str) -> int:
        match = re.search(rf"^{key}: (\d+)s$", NATS_CONF, re.M)
        assert match, key
        return int(match.group(1))

    grace = pod_spec(NATS_SET)["terminationGracePeriodSeconds"]
    assert grace > seconds("lame_duck_duration") + seconds("lame_duck_grace_period")


@pytest.mark.parametrize("script", ["start-valkey.sh", "start-sentinel.sh"])
def test_the_redis_start_scripts_are_valid_shell_run_by_their_containers(script: str, tmp_path: Path) -> None:
    (tmp_path / script).write_text(REDIS_DATA[script])
    subprocess.run(["sh", "-n", str(tmp_path / script)], check=True)
    commands = [c["command"] for c in pod_spec(find(RESOURCES, "StatefulSet", "redis"))["containers"]]
    assert ["sh", f"/etc/valkey/{script}"] in commands


def test_the_sentinel_config_fails_over_to_a_replica_when_the_primary_is_killed(tmp_path: Path) -> None:
    """valkey.conf on three servers (two following the first) and sentinel.conf on three Sentinels, with ports
    and names made local: kill -9 the primary and the Sentinels promote a replica that takes writes."""
    servers = []
    for i in range(3):
        port = free_port()
        text = re.sub(r"^port \d+$", f"port {port}", REDIS_CONF, flags=re.M)
        text = text.replace("bind * -::*", "bind 127.0.0.1").replace("dir /data", f"dir {tmp_path}/v{i}")
        (tmp_path / f"v{i}").mkdir()
        (tmp_path / f"v{i}.conf").write_text(text)
        argv = [find_valkey_server(), str(tmp_path / f"v{i}.conf")]
        if servers:
            argv += ["--replicaof", "127.0.0.1", str(servers[0].port)]
        servers.append(ConfiguredServer(argv, tmp_path / f"v{i}", port))
    sentinels = []
    for i in range(3):
        port = free_port()
        text = REDIS_DATA["sentinel.conf"].replace("port 26379", f"port {port}\nbind 127.0.0.1")
        text = text.replace("redis-0.redis-headless 6379", f"127.0.0.1 {servers[0].port}")
        text = text.replace("down-after-milliseconds mymaster 5000", "down-after-milliseconds mymaster 500")
        (tmp_path / f"s{i}").mkdir()
        (tmp_path / f"s{i}/sentinel.conf").write_text(text)
        argv = [find_valkey_server(), str(tmp_path / f"s{i}/sentinel.conf"), "--sentinel"]
        sentinels.append(ConfiguredServer(argv, tmp_path / f"s{i}", port))
    try:
        for server in [*servers, *sentinels]:
            server.start()

        def primary() -> tuple[str, int] | None:
            got = redis.Redis(port=sentinels[0].port, decode_responses=True).sentinel_get_master_addr_by_name(
                "mymaster")
            return (str(got[0]), int(got[1])) if got else None

        def replicas_known() -> bool:
            state = redis.Redis(port=sentinels[0].port, decode_responses=True).sentinel_master("mymaster")
            return int(state["num-slaves"]) == 2 and int(state["num-other-sentinels"]) == 2

        _wait(replicas_known, 30, "the Sentinels found both replicas and each other")
        assert primary() == ("127.0.0.1", servers[0].port)
        servers[0].kill()
        _wait(lambda: primary() not in (None, ("127.0.0.1", servers[0].port)), 30, "a replica promoted")
        new = primary()
        assert new is not None
        client = redis.Redis(port=new[1], decode_responses=True)
        client.set("raaf:job:after-failover", "queued")
        assert client.get("raaf:job:after-failover") == "queued"
    finally:
        for server in [*sentinels, *servers]:
            server.kill()


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
