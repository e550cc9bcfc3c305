"""One code path for CPU, one GPU and torchrun (DDP), as in nanochat.

``setup()`` reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK): with
it, the process group is initialised (NCCL on CUDA, gloo on CPU); without it,
the run is a single process on CUDA when present, else the CPU.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """bfloat16 autocast on CUDA; full precision on the CPU, where it is not faster in training."""
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def distribute(self, model: nn.Module, compile: bool = False) -> tuple[nn.Module, nn.Module]:
        """``(model, net)``: ``model`` holds the weights (SyncBN layers on CUDA under DDP), ``net`` is what
        the training step calls (DDP-wrapped when distributed, then ``torch.compile``d when asked)."""
        net = model
        if self.distributed:
            if self.cuda:  # SyncBN runs on CUDA only; on the CPU the loop averages BN statistics
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            net = DDP(model, device_ids=[self.local_rank] if self.cuda else None)
        if compile:
            net = torch.compile(net)
        return model, net


def setup(device: str = "auto") -> Runtime:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    want_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU; use device: auto or cpu")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", 0))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if want_cuda else "gloo")
        if want_cuda:
            torch.cuda.set_device(local)
        dev = torch.device("cuda", local) if want_cuda else torch.device("cpu")
        return Runtime(dev, rank, world, local)
    return Runtime(torch.device("cuda" if want_cuda else "cpu"))


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
