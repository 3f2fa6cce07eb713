"""How many torch threads a command should run: the CPUs this process may use, not the machine's.

``os.cpu_count()`` (and torch's default) counts every logical CPU of the host, also in a
container limited to one of them or under ``taskset``; threads beyond the CPUs a process gets
only wait for each other at OpenMP barriers (issue 15: a busy machine made the CLIs crawl). The
usable count is the smaller of the CPU affinity mask and the cgroup CPU quota (v2 ``cpu.max``,
v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up. No torch import here: the entry
points call :func:`set_torch_threads` once, before any work.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThreadChoice", "cgroup_cpu_limit", "choose_threads", "set_torch_threads", "usable_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_v2(folder: Path) -> float | None:
    """CPUs allowed by ``folder/cpu.max`` ("quota period" or "max period"), None if unlimited."""
    text = _read(folder / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(folder: Path) -> float | None:
    """CPUs allowed by ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: unlimited)."""
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _own_paths(proc_self_cgroup: Path) -> dict[str, str]:
    """The process's cgroup path per controller ("" for the v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    for line in (_read(proc_self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path.lstrip("/")
    return paths


def _ancestors(base: Path, relative: str) -> list[Path]:
    """``base/relative`` and each of its parents up to ``base`` (a limit anywhere above holds)."""
    out = [base]
    here = base
    for part in Path(relative).parts if relative else ():
        here = here / part
        out.append(here)
    return out


def cgroup_cpu_limit(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPU quota of this process's cgroups, in CPUs (1.5 = 150 ms per 100 ms), or None.

    Args:
        cgroup_root: where the cgroup file systems are mounted (tests pass a folder of fakes).
        proc_self_cgroup: the process's cgroup membership file (``/proc/self/cgroup``).

    Returns:
        The tightest quota among the process's cgroup and its parents, in v2 (``cpu.max``) and
        v1 (``cpu/`` or ``cpu,cpuacct/``) layouts; None when no quota is set or readable.
    """
    own = _own_paths(proc_self_cgroup)
    limits: list[float] = []
    for folder in _ancestors(cgroup_root, own.get("", "")):
        limit = _quota_v2(folder)
        if limit is not None:
            limits.append(limit)
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        base = cgroup_root / mount
        if base.is_dir():
            for folder in _ancestors(base, own.get("cpu", "")):
                limit = _quota_v1(folder)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def usable_cpus(
    cgroup_root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
    affinity: int | None = None,
) -> int:
    """The CPUs this process may use: min(affinity mask, cgroup quota rounded up), at least 1.

    Args:
        cgroup_root: see :func:`cgroup_cpu_limit`.
        proc_self_cgroup: see :func:`cgroup_cpu_limit`.
        affinity: the affinity mask's size (default: ``len(os.sched_getaffinity(0))``, or
            ``os.cpu_count()`` where there is no affinity call).
    """
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # macOS, Windows
            affinity = os.cpu_count() or 1
    count = affinity
    quota = cgroup_cpu_limit(cgroup_root, proc_self_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota - 1e-9))
    return max(1, count)


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and where it came from (printed once by each command)."""

    threads: int
    source: str

    def describe(self) -> str:
        return f"threads: {self.threads} ({self.source})"


def _env_threads(environ: Mapping[str, str]) -> int | None:
    text = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None


def choose_threads(
    requested: int = 0,
    *,
    flag: str = "--threads",
    change: str | None = None,
    environ: Mapping[str, str] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
) -> ThreadChoice:
    """The torch thread count: what the user chose, else the CPUs this process may use.

    Args:
        requested: ``--threads`` / ``runtime.threads``; 0 = auto.
        flag: how the user chose it, for the message (``--threads``, ``runtime.threads``).
        change: how to choose another count, for the message (default ``FLAG N``).
        environ: the environment (default ``os.environ``): ``OMP_NUM_THREADS`` is the user's
            choice when ``requested`` is 0.
        cgroup_root: see :func:`cgroup_cpu_limit`.
        proc_self_cgroup: see :func:`cgroup_cpu_limit`.

    Raises:
        ValueError: ``requested`` is negative.
    """
    if requested < 0:
        raise ValueError(
            f"{flag} must be >= 0 (0 = the CPUs this process may use), got {requested}"
        )
    if requested:
        return ThreadChoice(requested, flag)
    env = _env_threads(os.environ if environ is None else environ)
    if env is not None:
        return ThreadChoice(env, "OMP_NUM_THREADS")
    n = usable_cpus(cgroup_root, proc_self_cgroup)
    return ThreadChoice(n, f"the CPUs this process may use; {change or flag + ' N'} to change")


def set_torch_threads(
    requested: int = 0, *, flag: str = "--threads", change: str | None = None
) -> ThreadChoice:
    """Set torch's intra-op thread count from :func:`choose_threads`; returns the choice."""
    import torch

    choice = choose_threads(requested, flag=flag, change=change)
    torch.set_num_threads(choice.threads)
    return choice
