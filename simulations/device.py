"""Torch device resolution: "auto" picks CUDA when present, otherwise the CPU."""

from __future__ import annotations

import torch

DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """Turn a user-facing device name into a torch.device, or say what to pass instead."""
    if name not in DEVICE_NAMES:
        raise ValueError(f"unknown device {name!r}: use one of {', '.join(DEVICE_NAMES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU: use --device cpu or auto")
    return torch.device(name)
