"""A training process killed (SIGKILL, nothing runs after it) in the middle of writing its
checkpoint: the half-written file is never loaded, and --resume continues from the last whole
checkpoint to the same end."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import torch

from semtune.train.state import load_checkpoint

# Runs semtune.train with torch.save replaced: when it writes last.pt the second time (step 4)
# it writes half of the bytes into the temporary file, then the process kills itself (SIGKILL).
_KILLED_IN_SAVE = """
import io, os, signal, sys
import torch
real_save = torch.save
calls = 0
def save(obj, f, *args, **kwargs):
    global calls
    calls += ".last.pt." in os.path.basename(str(f))
    if calls == 2 and ".last.pt." in os.path.basename(str(f)):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        with open(f, "wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            os.fsync(out.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
from semtune.train.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _train_args(out: Path, train_dir: Path) -> list[str]:
    """A tiny run of 6 steps with a checkpoint every 2."""
    return [
        *("--config", "tiny", "--clean", str(train_dir), "--out", str(out)),
        *("--set", "schedule.steps=6", "--set", "schedule.eval_every=2", "--set", "data.val_set=A"),
    ]


def test_a_run_killed_while_writing_its_checkpoint_resumes_from_the_last_whole_one(
    tmp_path: Path, sample_train_dir: Path
) -> None:
    out = tmp_path / "run"
    args = _train_args(out, sample_train_dir)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_IN_SAVE, *args], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # the half-written file is a temporary one beside last.pt; last.pt is the step-2 state
    debris = [p for p in out.iterdir() if p.name.startswith(".last.pt.")]
    assert debris and debris[0].stat().st_size > 0
    assert load_checkpoint(out / "last.pt", torch.device("cpu")).step == 2
    resumed = subprocess.run(
        [sys.executable, "-m", "semtune.train", *args, "--resume"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(out / "last.pt", torch.device("cpu")).step == 6
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the debris is gone
    steps = [int(float(r["step"])) for r in csv.DictReader((out / "metrics.csv").open())]
    assert steps[-1] == 6 and 4 in steps


# torch.save fails with "No space left on device" when it writes last.pt the second time
_DISK_FULL_IN_SAVE = _KILLED_IN_SAVE.replace(
    "        os.kill(os.getpid(), signal.SIGKILL)",
    "        raise OSError(28, 'No space left on device', f)",
)


def test_a_full_disk_stops_the_run_with_a_message_and_it_resumes(
    tmp_path: Path, sample_train_dir: Path
) -> None:
    out = tmp_path / "run"
    args = _train_args(out, sample_train_dir)
    full = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_IN_SAVE, *args], capture_output=True, text=True
    )
    assert full.returncode == 1
    assert "No space left on device" in full.stderr and "--resume" in full.stderr
    assert "Traceback" not in full.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half file left
    assert load_checkpoint(out / "last.pt", torch.device("cpu")).step == 2
    resumed = subprocess.run(
        [sys.executable, "-m", "semtune.train", *args, "--resume"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(out / "last.pt", torch.device("cpu")).step == 6
