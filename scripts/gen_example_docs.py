"""Run every example against a real stack and write docs/examples.md (each example beside what it printed).

``python scripts/gen_example_docs.py`` starts NATS, Valkey, the five services and the OpenAI-wire mock (or uses
reachable ``NATS_URL`` / ``REDIS_URL``), runs examples/*.py, writes ``examples/expected/<name>.txt`` when
``--update`` is given, and always rewrites docs/examples.md from the expected outputs (which
tests/test_examples.py compares every run with). ``--check`` exits 1 when an example prints something else.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.examples import EXPECTED, ExampleIndex, ExampleStack, load_index, normalise  # noqa: E402

DOC = ROOT / "docs" / "examples.md"

HEADER = """# Examples: the seed README in Python

Every code example of the Ruby gem's README ([docs/seed/README.md](seed/README.md)) has a runnable Python twin
in [`examples/`](../examples/), listed in [`examples/index.toml`](../examples/index.toml) with the seed sections it
answers. Start the platform with `make run`, then run any of them from the repository root:

```bash
make run                                   # in one terminal: NATS, Valkey and the five services (demo model)
.venv/bin/python examples/basic_streaming.py
.venv/bin/pytest examples/mock_streaming_provider_test.py
```

They find the platform through `NATS_URL`, `REDIS_URL`, `RAAF_PREFIX` and `RAAF_GATEWAY_URL`
(or `raaf.configure(platform=...)`); the defaults match `make run`. With no `OPENAI_API_KEY` / `OPENAI_BASE_URL`
`make run` answers with the labelled demo model (canned sentences, its own demo agents). The output below is
what they print against the OpenAI-wire mock, which echoes (`You said: ...`): that is what makes it exact.
`tests/test_examples.py` runs every example in CI against a real stack (nats-server, Valkey, the five services,
the OpenAI-wire mock) and fails if one prints anything else, or if a seed section with a code example has no
twin. This page is written by `python scripts/gen_example_docs.py` from the same expected
outputs.
"""


def render(index: ExampleIndex) -> str:
    parts = [HEADER]
    for example in index.examples:
        source = example.path.read_text().rstrip()
        printed = example.expected_path.read_text().rstrip() if example.expected_path.exists() else "(not run yet)"
        run = " ".join(example.command) if example.command[0] == "pytest" else f"python {example.file}"
        parts.append(f"## {example.title}\n\nSeed section{'s' if len(example.sections) > 1 else ''}: "
                     + ", ".join(f"*{s}*" for s in example.sections)
                     + f" · [`examples/{example.file}`](../examples/{example.file})\n\n"
                     + f"```python\n{source}\n```\n\n`{run}` prints:\n\n```text\n{printed}\n```\n")
    parts.append("## Seed sections without a code example of their own\n\n"
                 + "\n".join(f"- *{section}*: {why}." for section, why in index.docs_only.items()) + "\n")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write what the examples print as expected output")
    parser.add_argument("--check", action="store_true", help="exit 1 if an example prints something unexpected")
    parser.add_argument("--docs-only", action="store_true", help="only rewrite docs/examples.md (no stack)")
    parser.add_argument("only", nargs="*", help="run only these example files")
    args = parser.parse_args()
    index = load_index()
    failed = False
    if not args.docs_only:
        chosen = [e for e in index.examples if not args.only or e.file in args.only]
        with tempfile.TemporaryDirectory(prefix="raaf-examples-") as data:
            stack = ExampleStack(Path(data))
            try:
                stack.start()
                results = stack.run_all(chosen)
            finally:
                stack.stop()
        EXPECTED.mkdir(exist_ok=True)
        for example in chosen:
            result = results[example.file]
            printed = normalise(result.stdout)
            if result.returncode != 0:
                failed = True
                print(f"FAILED {example.file} (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
                continue
            same = example.expected_path.exists() and example.expected_path.read_text() == printed
            print(f"{'ok      ' if same else 'CHANGED '} {example.file}")
            if not same:
                failed = failed or args.check
                print(printed)
                if args.update:
                    example.expected_path.write_text(printed)
    DOC.write_text(render(index))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
