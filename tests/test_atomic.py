"""Files a resume reads are written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from semtune.atomic import write_atomically, write_text_atomically


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "study.json"
    write_text_atomically(target, '{"trials": 3}')

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text('{"tri')  # a kill or a full disk here
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, half_then_crash)
    assert target.read_text() == '{"trials": 3}'
    assert [p.name for p in tmp_path.iterdir()] == ["study.json"]
