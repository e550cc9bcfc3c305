"""Fresh output batches that do not cost a page fault per 4 KiB on the CPU.

glibc serves allocations above 32 MiB (its largest mmap threshold) from a new
``mmap`` every time, so every 4 KiB page of a large output batch is faulted in
and zeroed by the kernel on first touch. For a batch of 32 images of
384 x 512 that is about 18,000 faults: measured on a 2-core VM, filling a
fresh 72 MiB tensor took 56-61 ms against 7.5 ms for a reused one, which is
more than the whole per-image work of the cheap types (a mean shift is 1.5 ms
per image). Backing such outputs with an anonymous mapping advised
``MADV_HUGEPAGE`` faults once per 2 MiB instead (12.5 ms for the same fill),
on kernels whose transparent huge pages are ``always`` or ``madvise``; elsewhere
the advice is ignored and the cost is what it was.

The tensor owns the mapping (through the buffer protocol) and is an ordinary
CPU tensor otherwise: it moves to shared memory, pins, saves and collates like
any other. Smaller outputs, other devices and platforms without ``madvise``
use ``torch.empty``.
"""
from __future__ import annotations

import math
import mmap

import torch
from torch import Tensor

HUGE_OUTPUT_BYTES = 32 << 20
_HUGE_PAGES = hasattr(mmap, "MADV_HUGEPAGE") and hasattr(mmap, "MAP_ANONYMOUS")


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised tensor; large CPU ones are backed by huge pages where the kernel allows."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not _HUGE_PAGES or torch.device(device).type != "cpu" or nbytes < HUGE_OUTPUT_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        mapping.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # a kernel without transparent huge pages: plain pages, still correct
        pass
    return torch.frombuffer(mapping, dtype=dtype).view(shape)


def empty_like(x: Tensor) -> Tensor:
    return empty(tuple(x.shape), x.dtype, x.device)


def clone(x: Tensor) -> Tensor:
    """``x.clone()`` (contiguous) into a fresh :func:`empty_like` buffer."""
    return empty_like(x).copy_(x)
