"""CPU seconds of processes read from /proc/<pid>/stat, and py-spy profiles of them, for the benchmarks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_LIB = re.compile(r"^.*/lib/python3\.\d+/(site-packages/)?")
_ROOT = f"{Path(__file__).resolve().parent.parent}/"


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far, in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a supervisor's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """``cpu_seconds`` of ``pid`` and of its running children (a supervisor and its worker processes)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children(pid))


class CpuMeter:
    """CPU seconds each named process spent between ``start()`` and ``stop()`` (those named in ``trees``: with
    their child processes)."""

    def __init__(self, pids: dict[str, int], trees: frozenset[str] = frozenset()) -> None:
        self.pids = pids
        self.trees = trees
        self._before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _cpu(self, name: str) -> float:
        pid = self.pids[name]
        return tree_cpu_seconds(pid) if name in self.trees else cpu_seconds(pid)

    def start(self) -> None:
        self._before = {name: self._cpu(name) for name in self.pids}

    def stop(self) -> dict[str, float]:
        self.spent = {name: self._cpu(name) - self._before[name] for name in self.pids}
        return self.spent


def py_spy() -> str | None:
    """The py-spy next to this interpreter (the venv's), or on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    """A ``py-spy record --format raw`` of one process (collapsed stacks: ``frame;frame;... count``)."""

    name: str
    path: Path
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def record(cls, name: str, pid: int, into: Path, rate: int, file: str | None = None) -> Profile:
        tool = py_spy()
        if tool is None:
            raise RuntimeError("py-spy is not installed (uv sync --dev)")
        into.mkdir(parents=True, exist_ok=True)
        path = into / f"{file or name}.txt"
        # --nonblocking: sampling must not pause the process it measures.
        proc = subprocess.Popen([tool, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                                 "--nonblocking", "--output", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(name, path, proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def summary(self, top: int = 15) -> str:
        """The frames with most samples on top (self time), and the source files with most samples anywhere
        on the stack (inclusive), as percentages of all samples."""
        if not self.path.exists():
            return f"### {self.name}: no profile written"
        own: Counter[str] = Counter()
        files: Counter[str] = Counter()
        total = 0
        for line in self.path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = stack.split(";")
            own[_short(frames[-1])] += count
            for file in {_file(frame) for frame in frames}:
                files[file] += count
        if not total:
            return f"### {self.name}: no samples"
        lines = [f"### {self.name}: {total} samples", "self (top of stack):"]
        lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in own.most_common(top)]
        lines.append("inclusive, by source file:")
        lines += [f"  {100 * n / total:5.1f} %  {file}" for file, n in files.most_common(top)]
        return "\n".join(lines)


def _file(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> the file's path from its package on (``aiohttp/web_protocol.py``)."""
    start = frame.rfind(" (")
    where = frame[start + 2:].rstrip(")") if start >= 0 else frame
    path = where.rsplit(":", 1)[0]
    if path.startswith(_ROOT):
        return path[len(_ROOT):]
    return _LIB.sub("", path)


def _short(frame: str) -> str:
    start = frame.rfind(" (")
    if start < 0:
        return frame
    where = frame[start + 2:].rstrip(")")
    path, _, line = where.rpartition(":")
    return f"{frame[:start]} ({_file(frame)}:{line})" if path else frame
