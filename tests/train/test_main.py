"""``python -m semtune.train --resume``: a run continues as it started; settings given on the
command line that differ from the run's saved config are refused, naming each key."""

from __future__ import annotations

from pathlib import Path

import pytest

from semtune.train.__main__ import build_parser, main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, sample_train_dir: Path) -> tuple[Path, list[str]]:
    """A finished 2-step tiny run and the settings it was started with."""
    out = tmp_path_factory.mktemp("train-main") / "run"
    settings = [
        *("--config", "tiny", "--clean", str(sample_train_dir)),
        *("--set", "schedule.steps=2", "--set", "schedule.eval_every=2"),
    ]
    assert main([*settings, "--out", str(out)]) == 0
    return out, settings


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "changed"),
    [
        (["--set", "schedule.steps=10"], ["schedule.steps (2 in the run, 10 given)"]),
        (["--set", "loss.gamma=5", "--set", "optim.lr=0.001"], ["loss.gamma", "optim.lr"]),
        (["--config", "cpu"], ["preset ('tiny' in the run, 'cpu' given)", "data.crop_size"]),
        (["--clean", "elsewhere/"], ["data.clean_dir"]),
        (["--blurred", "my_blurred/"], ["data.blurred_dir", "data.val_set"]),
    ],
)
def test_resume_refuses_settings_that_differ_from_the_run_naming_the_keys(
    run: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    given: list[str],
    changed: list[str],
) -> None:
    out, _ = run
    before = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    err = _refused(["--out", str(out), "--resume", *given], capsys)
    assert f"--resume continues the run in {out} as it started" in err
    assert "differ from its saved config (changed: " in err
    for key in changed:
        assert key in err
    assert "start a new run in another --out" in err
    assert "Traceback" not in err
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == before  # nothing touched


def test_resume_accepts_the_settings_the_run_started_with_or_none(
    run: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sample_train_dir: Path,
) -> None:
    out, settings = run
    # the original command line with --resume appended (what the README shows)
    assert main([*settings, "--out", str(out), "--resume"]) == 0
    # nothing: the run's own settings
    assert main(["--out", str(out), "--resume"]) == 0
    # a setting equal to the run's, the folder named relative instead of absolute
    monkeypatch.chdir(sample_train_dir.parent)
    assert main(["--out", str(out), "--resume", "--clean", sample_train_dir.name]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done: 2 steps") == 3
    assert '"preset": "tiny"' in (out / "config.json").read_text()  # never the default preset's


def test_resume_without_a_run_and_a_bad_key_are_messages(
    run: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(["--out", str(tmp_path / "none"), "--resume"], capsys)
    assert "last.pt does not exist" in err
    out, _ = run
    err = _refused(["--out", str(out), "--resume", "--set", "loss.gama=5"], capsys)
    assert "gama" in err and "Traceback" not in err


def test_the_thread_count_is_printed_once_at_start(
    run: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _ = run
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert main(["--out", str(out), "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("threads: ")] == [lines[0]]
    assert "the CPUs this process may use; --set runtime.threads=N to change" in lines[0]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().out.startswith("threads: 1 (OMP_NUM_THREADS)")


def test_config_defaults_to_the_cpu_preset_for_a_new_run() -> None:
    args = build_parser().parse_args(["-o", "x"])
    assert args.config is None and args.out == Path("x")  # main() reads None as cpu
