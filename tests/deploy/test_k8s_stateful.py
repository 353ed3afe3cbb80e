"""The NATS cluster and Redis configs from k8s/ run on real servers: a JetStream cluster forms, jobs survive a crash."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from shared.devstack.servers import find_nats_server, find_valkey_server, free_port
from tests.deploy import kustomize
from tests.deploy.kustomize import find, pod_spec
from tests.deploy.servers import ConfiguredServer, assert_jobs_survive_a_crash
from tests.deploy.settings_catalog import ROOT
from tests.support.waiting import eventually

RESOURCES = kustomize.build(ROOT / "k8s")
NATS_SET = find(RESOURCES, "StatefulSet", "nats")
NATS_CONF = find(RESOURCES, "ConfigMap", "nats-config")["data"]["nats.conf"]
REDIS_CONF = find(RESOURCES, "ConfigMap", "redis-config")["data"]["valkey.conf"]


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
    result = subprocess.run([find_nats_server(), "-c", str(conf), "-t"], capture_output=True, text=True,
                            env={**os.environ, "SERVER_NAME": "nats-0"}, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


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
        server = ConfiguredServer(["env", f"SERVER_NAME=nats-{i}", find_nats_server(), "-c", str(conf)],
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
    urls = [f"nats://127.0.0.1:{server.port}" for server, _ in nats_cluster]
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
    pod = pod_spec(find(RESOURCES, "StatefulSet", "redis"))
    (container,) = pod["containers"]
    assert container["command"][0] == "valkey-server" and container["command"][1].endswith("/valkey.conf")
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
