"""Two CPU processes with the gloo backend train one model: DDP keeps the ranks in step and it learns."""
import os
import socket

import torch
import torch.multiprocessing as mp

from iqabench.training import corpus
from iqabench.training.pretrain import PretrainConfig, fit

WORLD = 2
CFG = dict(arch="small_cnn", width=4, crop=32, batch_size=16, steps=12, lr=3e-3, proj_hidden=16, proj_dim=8,
           checkpoint_every=6, log_every=1, seed=0, device="cpu", all_gather=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    model, history = fit(PretrainConfig(**CFG), f"{root}/corpus", f"{root}/encoder.pt", f"{root}/ckpt")
    torch.save({"state": model.state_dict(), "history": history}, f"{root}/rank{rank}.pt")


def test_two_gloo_ranks_end_with_identical_weights_and_a_falling_loss(tmp_path):
    corpus.build(tmp_path / "corpus", photos=["astronaut", "coffee"], crop=48, n_images=96, shard_size=96, seed=0)
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    a, b = results[0]["state"], results[1]["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [h["loss"] for h in results[0]["history"]]
    assert len(losses) == CFG["steps"]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert (tmp_path / "encoder.pt").exists()  # only rank 0 writes, and it does
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step-00000006.pt", "step-00000012.pt"]
