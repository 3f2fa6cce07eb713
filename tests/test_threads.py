"""Thread counts from the CPUs a process may use (affinity, cgroup v1/v2 quota), read from fake
cgroup trees written here: never this machine's, whose limits the assertions cannot know."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from semtune.threads import cgroup_cpu_limit, choose_threads, set_torch_threads, usable_cpus


def _tree(root: Path, files: dict[str, str], membership: str = "0::/\n") -> tuple[Path, Path]:
    """A fake ``/sys/fs/cgroup`` and ``/proc/self/cgroup``."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "expected"),
    [
        ("150000 100000\n", 8, 2),  # 1.5 CPUs: rounded up
        ("100000 100000\n", 8, 1),
        ("20000 100000\n", 8, 1),  # a fifth of a CPU: still one thread
        ("400000 100000\n", 2, 2),  # the affinity mask is tighter than the quota
        ("max 100000\n", 6, 6),  # no quota
    ],
)
def test_a_cgroup_v2_quota_bounds_the_cpus_rounded_up(
    tmp_path: Path, cpu_max: str, affinity: int, expected: int
) -> None:
    root, proc = _tree(tmp_path / "cgroup", {"cpu.max": cpu_max})
    assert usable_cpus(root, proc, affinity=affinity) == expected


def test_the_quota_of_the_process_own_cgroup_or_a_parent_counts(tmp_path: Path) -> None:
    # the root's cpu.max is absent (as on a host); the process's slice and its parent have one
    root, proc = _tree(
        tmp_path / "cgroup",
        {
            "user.slice/cpu.max": "300000 100000\n",
            "user.slice/job.scope/cpu.max": "max 100000\n",
            "other.slice/cpu.max": "50000 100000\n",  # someone else's: ignored
        },
        membership="0::/user.slice/job.scope\n",
    )
    assert cgroup_cpu_limit(root, proc) == pytest.approx(3.0)
    assert usable_cpus(root, proc, affinity=16) == 3


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("250000", "100000", 3), ("-1", "100000", 16), ("50000", "100000", 1)],
)
def test_a_cgroup_v1_cfs_quota_bounds_the_cpus(
    tmp_path: Path, quota: str, period: str, expected: int
) -> None:
    root, proc = _tree(
        tmp_path / "cgroup",
        {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": quota, "cpu,cpuacct/cpu.cfs_quota_us": "-1"}
        | {"cpu,cpuacct/docker/abc/cpu.cfs_period_us": period},
        membership="4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n",
    )
    assert usable_cpus(root, proc, affinity=16) == expected


def test_no_cgroup_files_leave_the_affinity_mask(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path / "empty", {})
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpus(root, proc, affinity=5) == 5
    # and the real affinity call is what it defaults to
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_garbage_in_the_cgroup_files_is_no_limit(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path / "cgroup", {"cpu.max": "lots\n", "cpu/cpu.cfs_quota_us": "x"})
    assert usable_cpus(root, proc, affinity=4) == 4


def test_the_user_choice_wins_then_omp_num_threads_then_the_usable_cpus(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path / "cgroup", {"cpu.max": "100000 100000\n"})
    fake = {"cgroup_root": root, "proc_self_cgroup": proc}
    assert choose_threads(3, environ={"OMP_NUM_THREADS": "2"}, **fake).threads == 3
    env = choose_threads(0, environ={"OMP_NUM_THREADS": "2"}, **fake)
    assert (env.threads, env.source) == (2, "OMP_NUM_THREADS")
    auto = choose_threads(0, environ={}, **fake)
    assert auto.threads == 1 and "the CPUs this process may use" in auto.source
    assert "--threads N to change" in auto.describe()
    # an unusable OMP_NUM_THREADS is not a choice
    assert choose_threads(0, environ={"OMP_NUM_THREADS": "lots"}, **fake).threads == 1
    with pytest.raises(ValueError, match="--threads must be >= 0"):
        choose_threads(-1)


def test_set_torch_threads_sets_what_it_says() -> None:
    choice = set_torch_threads(1)
    assert torch.get_num_threads() == 1
    assert choice.describe() == "threads: 1 (--threads)"
