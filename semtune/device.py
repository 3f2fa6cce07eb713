"""Which torch device a command runs on: one rule for training, scoring and restoring.

``auto`` is CUDA when torch can use it, else the CPU; a named device (``cpu``, ``cuda``,
``cuda:1``) is checked against what exists, so that a missing GPU is a sentence, not a
traceback from deep inside torch.
"""

from __future__ import annotations

import os

import torch

__all__ = ["gpu_fallback_note", "resolve_device"]


def resolve_device(name: str = "auto", *, option: str = "--device") -> torch.device:
    """``name`` as a torch device, or a ValueError saying what is available.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ...
        option: how the user gave it (the flag or config key), for the message.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"{option} {name}: not a device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option} {name}: no CUDA device here; use cpu (or auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"{option} {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def gpu_fallback_note(device: torch.device) -> str | None:
    """A sentence when a GPU was assigned to this process (``CUDA_VISIBLE_DEVICES``, as Ray sets
    it for a trial with ``resources: {gpu: ...}``) but the run is on the CPU; else None."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if device.type == "cuda" or not visible or visible in ("-1", "NoDevFiles"):
        return None
    why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device"
    return (
        f"GPU {visible} assigned (CUDA_VISIBLE_DEVICES={visible}) but torch cannot use it "
        f"({why}): training on the CPU"
    )
