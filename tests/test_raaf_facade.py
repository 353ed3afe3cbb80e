"""``import raaf`` is the client API alone: no service code until an embedding name is first used."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.support.env import ROOT

EMBEDDING = """
import json, sys
import raaf

def loaded():
    return sorted(m for m in sys.modules if m == "services" or m.startswith("services."))

before = loaded()
mock = raaf.MockProvider(["Hello from the mock."])
server = raaf.WebSocketServer(port=0, host="127.0.0.1", start_nats=False, nats_url="nats://127.0.0.1:1")
chat = raaf.RealTimeChat(run_services=False, start_nats=False, nats_url="nats://127.0.0.1:1")
print(json.dumps({
    "before": before,
    "after": loaded(),
    "modules": [type(obj).__module__ for obj in (mock, server, chat)],
    "cached": raaf.MockProvider is raaf.__dict__.get("MockProvider"),
    "queued": [script.text for script in mock.queued],
}))
"""

EVERY_NAME = """
import json
import raaf

missing = [name for name in raaf.__all__ if not hasattr(raaf, name)]
star = {}
exec("from raaf import *", star)
print(json.dumps({"missing": missing, "not_starred": sorted(set(raaf.__all__) - set(star)),
                  "unknown_is_an_error": not hasattr(raaf, "NoSuchName")}))
"""


def run_python(code: str) -> Any:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and decode the JSON it prints."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_importing_raaf_loads_no_service_module() -> None:
    loaded = run_python("import json, sys, raaf\n"
                        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'services')))")
    assert loaded == []


def test_the_embedding_names_load_their_service_on_first_use_and_work() -> None:
    seen = run_python(EMBEDDING)
    assert seen["before"] == []
    assert {"services.gateway", "services.chat", "services.agent_runner"} <= set(seen["after"])
    assert seen["modules"] == ["raaf.testing.providers", "raaf.server", "raaf.chat"]
    assert seen["cached"], "a lazy name is imported once, then an ordinary attribute"
    assert seen["queued"] == ["Hello from the mock."]


def test_every_name_in_raaf_all_resolves() -> None:
    seen = run_python(EVERY_NAME)
    assert seen == {"missing": [], "not_starred": [], "unknown_is_an_error": True}
