"""Every example in examples/ runs against a real stack and prints exactly what docs/examples.md shows; every seed
README section with a code example has one."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.devstack.servers import NatsServer, ValkeyServer
from tests.support.env import ROOT
from tests.support.examples import SEED_README, Example, ExampleStack, load_index, normalise, seed_sections_with_code

INDEX = load_index()


@pytest.fixture(scope="module")
def printed(nats_server: NatsServer, redis_server: ValkeyServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    """One stack (the five services on the session's NATS and Valkey, under their own prefix, answering from the
    OpenAI-wire mock), every example run against it, four at a time."""
    stack = ExampleStack(tmp_path_factory.mktemp("examples"), nats_url=nats_server.url, redis_url=redis_server.url)
    try:
        stack.start()
        yield stack.run_all(INDEX.examples)
    finally:
        stack.stop()


@pytest.mark.parametrize("example", INDEX.examples, ids=lambda e: e.file)
def test_example_prints_what_the_docs_show(example: Example, printed: dict[str, subprocess.CompletedProcess[str]]
                                           ) -> None:
    result = printed[example.file]
    assert result.returncode == 0, f"{example.file} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    assert normalise(result.stdout) == example.expected_path.read_text(), result.stderr[-3000:]


def test_every_seed_section_with_a_code_example_has_a_python_twin() -> None:
    sections = seed_sections_with_code(SEED_README.read_text())
    assert len(sections) >= 30  # the parser found the README's sections (it has 34 with code)
    covered = {section for example in INDEX.examples for section in example.sections}
    missing = [s for s in sections if s not in covered and s not in INDEX.docs_only]
    assert not missing, f"seed sections without an example: {missing}"
    unknown = (covered | set(INDEX.docs_only)) - set(sections)
    assert not unknown, f"index.toml names sections the seed README does not have: {unknown}"


def test_every_example_file_is_indexed_and_has_its_expected_output() -> None:
    files = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert files == {e.file for e in INDEX.examples}
    for example in INDEX.examples:
        assert example.expected_path.read_text().strip(), f"no expected output for {example.file}"


def test_the_examples_page_is_generated_from_the_current_examples() -> None:
    spec = importlib.util.spec_from_file_location("gen_example_docs", ROOT / "scripts" / "gen_example_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page: Path = module.DOC
    assert page.read_text() == module.render(INDEX), "run python scripts/gen_example_docs.py --docs-only"


def test_the_seed_readme_copy_is_the_seed() -> None:
    original = ROOT.parent / "shared" / "seed" / "000_506a40726392032e.txt"
    if not original.exists():
        pytest.skip("../shared/seed is not beside this checkout")
    assert SEED_README.read_text().endswith(original.read_text())
