"""fastai data-parallel training on CPU (gloo), for tests and CPU clusters: `gloo_distrib_ctx` and the
loader and trainer behind it."""

from __future__ import annotations

from contextlib import contextmanager

import torch.distributed as dist
from fastai.callback.progress import ProgressCallback
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.torch_core import rank_distrib

__all__ = ["GlooDistributedDL", "GlooDistributedTrainer", "gloo_distrib_ctx"]


class GlooDistributedDL(DistributedDL):
    """fastai's `DistributedDL`, broadcasting the order of items with `broadcast_object_list` (any backend).

    fastai's `DistributedDL` sends the shuffled order from rank 0 to the other ranks through a CUDA
    tensor, which only works on GPUs (NCCL); this one works with gloo on CPU too. Built by
    `GlooDistributedTrainer`; the arguments are those of fastai's `DistributedDL`.
    """

    def _broadcast(self, t, rank):
        obj = [list(t)]
        dist.broadcast_object_list(obj, rank)
        return obj[0]


class GlooDistributedTrainer(DistributedTrainer):
    """fastai's `DistributedTrainer` wrapping the loaders in `GlooDistributedDL`.

    Nothing of fastai's is patched: use it through `gloo_distrib_ctx`. The arguments are those of
    fastai's `DistributedTrainer`.
    """

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else GlooDistributedDL(dl, device=self.learn.model.device)


@contextmanager
def gloo_distrib_ctx(learn, sync_bn: bool = False, cpu: bool = True, **accelerator_kwargs):
    """Train `learn` data-parallel over the initialized process group (gloo on CPU) inside the block.

    Like fastai's `learn.distrib_ctx(sync_bn, cpu=cpu)`: DistributedDataParallel model, one shard of
    every batch order per rank, progress bar on rank 0 only; the loaders are `GlooDistributedDL`,
    so the order is broadcast on any backend. Nothing of fastai's is patched. On GPUs use fastai's
    own `with learn.distrib_ctx():` (or `accelerate launch`).

    Args:
        learn: a fastai `Learner`; the process group must be initialized
            (`torch.distributed.init_process_group("gloo")`).
        sync_bn: convert BatchNorm to SyncBatchNorm (False by default: SyncBatchNorm needs CUDA).
        cpu: train on the CPU (passed to accelerate's `Accelerator`).
        **accelerator_kwargs: further arguments of fastai's `DistributedTrainer` (accelerate's
            `Accelerator`).

    Yields:
        `learn`, with the trainer added; it is removed (and the progress bar restored) on exit.

    Examples:
        Run with `torchrun --nproc_per_node 2 train.py`, where train.py holds:

        ```python
        torch.distributed.init_process_group("gloo")
        learn = esc50_learner(dls, cbs=StatsCallback(red_dims=(0, 1, 3)))
        with gloo_distrib_ctx(learn):
            learn.fit(1)
        ```
    """
    trainer = GlooDistributedTrainer(sync_bn, cpu=cpu, **accelerator_kwargs)
    learn.add_cb(trainer)
    removed_progress = rank_distrib() != 0 and any(isinstance(cb, ProgressCallback) for cb in learn.cbs)
    if removed_progress:
        learn.remove_cb(ProgressCallback)
    try:
        yield learn
    finally:
        learn.remove_cb(trainer)
        # Release what the Accelerator holds (accelerate's documented clean-up: its references to the
        # prepared model, then a garbage collection). Without it, two-rank CPU runs of
        # tests/test_distributed.py sometimes aborted at interpreter exit, after destroy_process_group
        # ("terminate called without an active exception", from a C++ thread torn down during
        # finalization); with it, they did not (docs/performance.md). Which object carried the
        # thread was not pinned down; pytorch/pytorch#179291 describes the likely mechanism (gloo
        # work objects holding tensors that are only freed during interpreter finalization).
        trainer.accelerator.free_memory()
        if removed_progress:
            learn.add_cb(ProgressCallback())
