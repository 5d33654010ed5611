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
    """fastai's `DistributedDL`, broadcasting the order of items with `broadcast_object_list`, not a
    CUDA tensor (NCCL only): it works with gloo on CPU too."""

    def _broadcast(self, t, rank):
        obj = [list(t)]
        dist.broadcast_object_list(obj, rank)
        return obj[0]


class GlooDistributedTrainer(DistributedTrainer):
    "fastai's `DistributedTrainer` wrapping the loaders in `GlooDistributedDL` (use it through `gloo_distrib_ctx`)."

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else GlooDistributedDL(dl, device=self.learn.model.device)


@contextmanager
def gloo_distrib_ctx(learn, sync_bn: bool = False, cpu: bool = True, **accelerator_kwargs):
    """Train `learn` data-parallel over the initialized process group (gloo on CPU) inside the block.

    Like fastai's `learn.distrib_ctx(sync_bn, cpu=cpu)`, with `GlooDistributedDL` loaders, so that
    the order is broadcast on any backend. On GPUs use fastai's own `with learn.distrib_ctx():`.

    Args:
        learn: a fastai `Learner`; the process group must be initialized (e.g. with "gloo").
        sync_bn: convert BatchNorm to SyncBatchNorm (it needs CUDA).
        cpu: train on the CPU (passed to accelerate's `Accelerator`).
        **accelerator_kwargs: further arguments of fastai's `DistributedTrainer`.

    Yields:
        `learn`, with the trainer added until the block ends.

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
        # Without it, gloo runs sometimes aborted at interpreter exit (docs/performance.md, pytorch/pytorch#179291).
        trainer.accelerator.free_memory()
        if removed_progress:
            learn.add_cb(ProgressCallback())
