"""`AudioDataLoader`: batches of cached audio assembled in one step, equal to fastai's per-item batches.

fastai builds a batch item by item: a pandas row per column reader, type dispatch for every
transform and element, then collation. For audio read from an `AudioCache` that costs about 1.5 ms
of Python per clip on a 2-core CPU, as much as the batch spectrogram, so the data pipeline could
never be much faster than the decoding it replaced. `AudioDataLoader` (the `dl_type` of
`AudioBlock`) recognizes the plain audio pipeline (a `Datasets` of an input and a target,
`LoadAudio` with a cache as the input's last type transform, `ResizeSignal` as the only item
transform besides fastai's `ToTensor`, nothing before batching) and then copies each clip's crop
straight from the memory-mapped cache into the batch, converting to float32 on the way. The
batch is the one fastai would have built: the same values, types and metadata, and the same
random crops for the same seed (the crop starts are drawn with `ResizeSignal`'s own rule, in the
same order). Any other pipeline (augmentations as item transforms, no cache, a custom
`create_item`) takes fastai's per-item path unchanged.
"""

from __future__ import annotations

from types import MethodType

import numpy as np
import torch
from fastai.data.core import Datasets, TfmdDL
from fastai.data.transforms import ToTensor
from fasttransform import Pipeline
from torch import Tensor

from . import _buffers
from .core import AudioTensor, LoadAudio, ResizeSignal, crop_pad

__all__ = ["AudioDataLoader"]


def _is_default_method(dl, name: str) -> bool:
    "True unless `name` was replaced on the instance (fastai lets `create_item=...` etc. be passed in)."
    m = getattr(dl, name, None)
    return isinstance(m, MethodType) and m.__func__ is getattr(type(dl), name, None)


class _CachedPlan:
    "What the fast path needs: the cache, the crop transform, and each item's source path and target."

    def __init__(self, cache, resize: ResizeSignal, paths: list[str], targets: Tensor):
        self.cache, self.resize, self.paths, self.targets = cache, resize, paths, targets
        self.n_samples = int(round(resize.duration * cache.sample_rate))


class AudioDataLoader(TfmdDL):
    """A fastai `TfmdDL` that assembles batches of `AudioCache`d clips in one step (see the module
    docstring for when); otherwise exactly `TfmdDL`. Batches: `AudioTensor` `(bs, channels, samples)`
    and the targets, as fastai's per-item path would give them."""

    def before_iter(self):
        super().before_iter()
        # Planned in the main process, before worker processes start, so workers inherit it.
        self._cached_plan = self._make_plan()

    def _make_plan(self) -> _CachedPlan | None:
        ds = self.dataset
        if not isinstance(ds, Datasets) or len(ds.tls) != 2 or getattr(ds, "n_inp", 1) != 1 or self.prebatched:
            return None
        x_fs = list(ds.tls[0].tfms.fs)
        if not x_fs or not isinstance(x_fs[-1], LoadAudio) or x_fs[-1].cache is None:
            return None
        item_fs = list(self.after_item.fs)
        resizes = [f for f in item_fs if type(f) is ResizeSignal]
        if len(resizes) != 1 or any(type(f) not in (ResizeSignal, ToTensor) for f in item_fs) or len(self.before_batch.fs):
            return None
        if not all(_is_default_method(self, n) for n in ("create_item", "create_batch", "do_item", "do_batch", "create_batches")):
            return None
        known = getattr(ds, "_fastspecnorm_sources", None)
        if known is None or len(known[0]) != len(ds):
            known = self._sources(ds, x_fs[:-1])
            if known is None:
                return None
            ds._fastspecnorm_sources = known  # reused by every loader over this Datasets (dl.new, valid, ...)
        paths, targets = known
        return _CachedPlan(x_fs[-1].cache, resizes[0], paths, targets)

    @staticmethod
    def _sources(ds: Datasets, get_path_fs) -> tuple[list[str], Tensor] | None:
        "Each item's path (the input's type transforms before `LoadAudio`) and target; None if targets do not stack."
        x_tl, y_tl = ds.tls
        get_path = Pipeline(get_path_fs, split_idx=x_tl.tfms.split_idx)
        raw = getattr(x_tl.items, "iloc", x_tl.items)
        paths = [get_path(raw[i]) for i in range(len(x_tl))]
        if not all(isinstance(p, (str, bytes)) or hasattr(p, "__fspath__") for p in paths):
            return None
        try:
            targets = torch.stack([y_tl[i] for i in range(len(y_tl))]) if len(y_tl) else None
        except (RuntimeError, TypeError):  # variable-size targets: fastai's path handles them
            return None
        if targets is None or targets.dim() != 1:
            return None
        return paths, targets

    def create_batches(self, samps):
        plan = getattr(self, "_cached_plan", None)
        if plan is None:
            yield from super().create_batches(samps)
            return
        split_idx = self.after_item.split_idx
        for idxs in self.chunkify(samps):
            yield self._cached_batch(plan, list(idxs), split_idx)

    def _cached_batch(self, plan: _CachedPlan, idxs: list[int], split_idx) -> tuple[AudioTensor, Tensor]:
        cache, resize, n = plan.cache, plan.resize, plan.n_samples
        clips = []
        for i in idxs:
            path = plan.paths[i]
            stored = cache.stored(path)
            if stored is None:  # not cached, changed or corrupt: decoded from the source, like LoadAudio
                clips.append((cache.get(path), None))
            else:
                clips.append((None, stored))
        channels = {(c if c is not None else s).shape[0] for c, s in clips}
        if len(channels) != 1:
            raise RuntimeError(f"clips in one batch have different channel counts {sorted(channels)}; use mono=True")
        # A buffer of an earlier batch that nothing references any more, else a new one (see _buffers).
        out = _buffers.WAVEFORM_BATCHES.get((len(idxs), channels.pop(), n), np.float32)
        for j, (clip, stored) in enumerate(clips):
            length = (clip if clip is not None else stored).shape[-1]
            start = resize.crop_start(length - n, split_idx)  # the per-item path's draw, in its order
            if stored is not None and length >= n:
                cache.to_float(stored[:, start : start + n], out=out[j])
            else:
                full = clip if clip is not None else torch.from_numpy(cache.to_float(stored))
                out[j] = crop_pad(full, n, start, resize.pad_mode).numpy()
        x = AudioTensor(torch.from_numpy(out), sr=cache.sample_rate)
        return x, plan.targets[torch.as_tensor(idxs, dtype=torch.long)]
