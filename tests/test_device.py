"""One device rule for training, scoring and restoring (semtune.device)."""

from __future__ import annotations

import pytest
import torch

from semtune.device import gpu_fallback_note, resolve_device


def test_auto_is_cuda_when_torch_can_use_it_else_the_cpu() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_is_a_sentence_naming_the_option() -> None:
    with pytest.raises(ValueError, match=r"^runtime.device cuda:1: no CUDA device here"):
        resolve_device("cuda:1", option="runtime.device")


def test_a_name_that_is_no_device_says_so() -> None:
    with pytest.raises(ValueError, match=r"^--device tpu9: not a device"):
        resolve_device("tpu9")


@pytest.mark.parametrize(
    ("visible", "said"), [("3", True), ("", False), ("-1", False), ("NoDevFiles", False)]
)
def test_an_assigned_gpu_that_torch_cannot_use_is_said_once(
    monkeypatch: pytest.MonkeyPatch, visible: str, said: bool
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    note = gpu_fallback_note(torch.device("cpu"))
    assert (note is not None) == said
    if said:
        assert note is not None
        assert note.startswith("GPU 3 assigned (CUDA_VISIBLE_DEVICES=3)")
        assert note.endswith("training on the CPU")
    # on the GPU it was given, nothing to say
    assert gpu_fallback_note(torch.device("cuda")) is None
