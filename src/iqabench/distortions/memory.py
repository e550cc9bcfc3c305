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

Freed mappings are kept for the next output of the same size (at most
``KEEP_FREE_BYTES`` in all), as glibc keeps small freed blocks: a batch that
follows a dropped one then takes memory that is already faulted in instead of
fresh zeroed pages (measured on the 2-core VM: filling 72 MiB took 8 ms reused
against 14 ms fresh, with huge pages). A mapping is free once no tensor or view
of it is left: each tensor holds a ``memoryview`` of its mapping, and a weak
reference to that view puts the mapping back when the last holder is gone.
"""
from __future__ import annotations

import math
import mmap
import weakref

import torch
from torch import Tensor

HUGE_OUTPUT_BYTES = 32 << 20
KEEP_FREE_BYTES = 256 << 20
_HUGE_PAGES = hasattr(mmap, "MADV_HUGEPAGE") and hasattr(mmap, "MAP_ANONYMOUS")
# nbytes -> free mappings. Only list.append/pop and dict.setdefault touch it: each is
# atomic under the GIL, so the weakref callback (which runs wherever the last view dies)
# needs no lock that the allocating thread could already hold.
_FREE: dict[int, list[mmap.mmap]] = {}
_VIEWS: dict[int, weakref.ref] = {}  # the live weak references, so their callbacks stay registered


def _mapping(nbytes: int) -> mmap.mmap:
    try:
        return _FREE[nbytes].pop()
    except (KeyError, IndexError):
        pass
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        mapping.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # a kernel without transparent huge pages: plain pages, still correct
        pass
    return mapping


def _on_free(mapping: mmap.mmap, reference: weakref.ref) -> None:
    _VIEWS.pop(id(reference), None)
    kept = sum(len(free) * size for size, free in list(_FREE.items()))
    if kept + len(mapping) <= KEEP_FREE_BYTES:
        _FREE.setdefault(len(mapping), []).append(mapping)


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised tensor; large CPU ones are backed by huge pages where the kernel allows,
    reusing the memory of a freed output of the same size."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not _HUGE_PAGES or torch.device(device).type != "cpu" or nbytes < HUGE_OUTPUT_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    mapping = _mapping(nbytes)
    view = memoryview(mapping)
    reference = weakref.ref(view, lambda dead, mapping=mapping: _on_free(mapping, dead))
    _VIEWS[id(reference)] = reference
    return torch.frombuffer(view, dtype=dtype).view(shape)


def empty_like(x: Tensor) -> Tensor:
    return empty(tuple(x.shape), x.dtype, x.device)


def clone(x: Tensor) -> Tensor:
    """``x.clone()`` (contiguous) into a fresh :func:`empty_like` buffer."""
    return empty_like(x).copy_(x)
