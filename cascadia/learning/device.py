"""Where torch computes: ``--device auto|cpu|cuda`` of train, tune, run and validate.

Why one resolver: every entry point must read the same word the same way, and fail the
same way (one line, before any work) when the GPU it names is not there. Model
directories stay device-independent: weights are always written from CPU tensors.
"""

from __future__ import annotations

import torch

#: The words ``--device`` takes (``cuda:N`` also names one GPU of several).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device that is not one of :data:`DEVICES`, or a GPU torch does not see."""


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``: ``auto`` is the first CUDA GPU when torch sees one,
    else the CPU; ``cuda`` / ``cuda:N`` must exist.

    Raises
    ------
    DeviceError
        Unknown word, or a CUDA device this torch build or machine does not have.
    """
    word = (name or "auto").strip().lower()
    if word == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if word == "cpu":
        return torch.device("cpu")
    if word == "cuda" or word.startswith("cuda:"):
        index = word.partition(":")[2]
        if index and not index.isdigit():
            raise DeviceError(f"--device {name!r}: expected cuda or cuda:N (N a GPU number)")
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(
                f"--device {name}: torch {torch.__version__} ({build}) sees no CUDA GPU; "
                "use --device cpu, or auto to take a GPU only when there is one"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: torch sees {torch.cuda.device_count()} CUDA GPU(s) "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device(word)
    raise DeviceError(f"--device {name!r}: expected one of {', '.join(DEVICES)} or cuda:N")
