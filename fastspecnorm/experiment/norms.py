"""The comparison's normalizations in one place: their names and what each does (`NORMS`), and what
each adds to a run (batch transforms, a statistics callback, learner options: `norm_setup`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .._table import did_you_mean

__all__ = ["Norm", "NORMS", "NormSetup", "check_norms", "norm_setup", "register_norm"]


@dataclass(frozen=True)
class Norm:
    """One normalization of the comparison.

    Adding a normalization means adding one `Norm` to `NORMS` (or `register_norm` from your own code).

    Attributes:
        name: its command-line name.
        description: what it does, in one line (the tables of normalizations show it).
        statistics: where its numbers come from ("-", "dataset", "per item", "fixed", "learned").
        waveform_norm: whether each clip is standardized before the spectrogram.
        red_dims: the `StatsRecorder` dimensions for dataset statistics (None: no statistics pass).
        mask_fill: the value `SpecAugment` fills its masks with under `--augment`, the value that
            carries no information after this normalization (a number in its output's unit, or
            "mean": each item's own per-bin mean).
        spec_tfms: builds the batch transforms it puts right after `AudioToSpec` (None: none).
        to_db: whether it works on dB spectrograms (False: on energies).
        input_bn: a `FreqBatchNorm` first in the model.
    """

    name: str
    description: str
    statistics: str
    waveform_norm: bool
    red_dims: tuple[int, ...] | None = None
    mask_fill: float | str = 0.0
    spec_tfms: Callable[[], list] | None = None
    to_db: bool = True
    input_bn: bool = False


def _transforms(name: str, **kwargs) -> list:
    "`[fastspecnorm.normalize.<name>(**kwargs)]`, imported here: `compare --help` reads NORMS without torch."
    from .. import normalize  # here: keeps `compare --help` free of torch

    return [getattr(normalize, name)(**kwargs)]


# In place right after AudioToSpec, whose output is fresh: it saves an allocation.
_instance = partial(_transforms, "InstanceMinMax", inplace=True)
_dbrange = partial(_transforms, "DbRangeNormalize", inplace=True)
_pcen = partial(_transforms, "PCEN")
_utterance = partial(_transforms, "UtteranceNormalize")


#: The comparison's normalizations by name, in the order tables show them: the only list of names.
NORMS: dict[str, Norm] = {
    n.name: n
    for n in (
        # mask_fill: the dB floor of silence (AudioToSpec clamps power at 1e-10).
        Norm("none", "nothing (no waveform normalization either)", "-", waveform_norm=False, mask_fill=-100.0),
        Norm("global", "`(x - mean) / std`, one mean/std per audio channel", "dataset (training split)", True, (0, 2, 3)),
        Norm("channel", "`(x - mean) / std`, one mean/std per frequency bin", "dataset (training split)", True, (0, 1, 3)),
        Norm("instance", "standardize, then min-max to [0, 1]", "per item", True, spec_tfms=_instance),
        # Raw levels: standardized first, much of the quick preset would lie above +20 dB, clipped to 1.
        Norm(
            "dbrange", "Tacotron's fixed range: -80..+20 dB to [0, 1], clipped", "fixed", waveform_norm=False, spec_tfms=_dbrange
        ),
        # Its own gain control, so clips keep their level, as in librosa's usage (energies of int32-scaled audio).
        Norm(
            "pcen",
            "per-channel energy normalization of the (mel) energies, librosa's defaults (0.4 s)",
            "per item (running)",
            waveform_norm=False,
            spec_tfms=_pcen,
            to_db=False,
        ),
        # Standardized waveforms: the per-bin mean removes the level anyway, and quiet clips stay above -100 dB.
        Norm(
            "utterance", "`(x - mean) / std` per item and frequency bin over its frames", "per item", True, spec_tfms=_utterance
        ),
        # The learned counterpart of `channel` (PANNs' bn0); masks take each item's per-bin mean, which it maps near 0.
        Norm(
            "bn",
            "BatchNorm over frequency bins as the model's first layer",
            "learned (running batch stats)",
            True,
            mask_fill="mean",
            input_bn=True,
        ),
    )
}


def register_norm(norm: Norm) -> Norm:
    """Add `norm` to `NORMS`, after the package's own, for this process (`compare(norms=...)`, the summaries).

    Args:
        norm: the normalization; its `spec_tfms` builds the transforms after `AudioToSpec` (a
            `fastspecnorm.normalize.SpecNormalizer` subclass is kept out of the statistics pass).

    Returns:
        `norm`.

    Raises:
        ValueError: a normalization of that name exists already.
    """
    if norm.name in NORMS:
        raise ValueError(f"a normalization named {norm.name!r} exists already; NORMS has {' '.join(NORMS)}")
    NORMS[norm.name] = norm
    return norm


def check_norms(names: Iterable[str]) -> list[str]:
    """Check normalization names against `NORMS`.

    Args:
        names: normalization names.

    Returns:
        `names` as a list.

    Raises:
        ValueError: a name not in `NORMS` (naming it, the closest known names and all of them).
    """
    names = list(names)
    unknown = [n for n in names if n not in NORMS]
    if unknown:
        raise ValueError(f"unknown normalization(s) {unknown}{did_you_mean(unknown, NORMS)}; expected some of {' '.join(NORMS)}")
    return names


@dataclass
class NormSetup:
    """What a run of one norm adds to the loaders and the Learner (`norm_setup`).

    Attributes:
        batch_tfms: batch transforms put after `AudioToSpec`.
        cbs: callbacks for the Learner (e.g. `StatsCallback`, `MixUp`).
        learner_kwargs: arguments for `audio_learner` (e.g. `input_bn=True`).
        settings: `AudioSettings` overrides for the DataLoaders (e.g. `waveform_norm`, `to_db`).
    """

    batch_tfms: list = field(default_factory=list)
    cbs: list = field(default_factory=list)
    learner_kwargs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def norm_setup(
    name: str,
    stats_fraction: float = 1.0,
    stats_path: str | Path | None = None,
    augment: bool | str = False,
    progress: bool = True,
    refresh_stats: bool = False,
) -> NormSetup:
    """How a run of normalization `name` is built.

    Dataset statistics come from the training split only, through `StatsCallback` (saved to /
    reused from `stats_path` when given), never from augmented batches.

    Args:
        name: a name of `NORMS`.
        stats_fraction: share of training batches the dataset statistics are gathered from, in (0, 1].
        stats_path: where the statistics are saved and reused (None: not saved).
        augment: the train-only augmentations to add (`AUGMENTS`): True or "spec", `SpecAugment`
            masks after the normalization (filled with the norm's `mask_fill`) and fastai's
            `MixUp`; "waveform", `waveform_augmentations()` (gain, noise, time shift) before the
            waveform normalization and the spectrogram; "all", both; False, none.
        progress: a progress bar while statistics are gathered.
        refresh_stats: recompute (with a warning) a file at `stats_path` made with other settings instead of refusing it.

    Returns:
        The `NormSetup` of one run.

    Raises:
        ValueError: `name` is not in `NORMS`.
    """
    # here, not above: keeps `fastspecnorm compare --help` (which reads NORMS) free of torch
    from ..augment import SpecAugment, augment_callbacks, waveform_augmentations
    from ..callback import StatsCallback

    norm = NORMS[check_norms([name])[0]]
    setup = NormSetup(settings={"waveform_norm": norm.waveform_norm})
    if not norm.to_db:
        setup.settings["to_db"] = False
    if norm.red_dims is not None:
        setup.cbs.append(StatsCallback(red_dims=norm.red_dims, fraction=stats_fraction, path=stats_path, progress=progress,
                                       refresh=refresh_stats))  # fmt: skip
    if augment in ("waveform", "all"):
        setup.batch_tfms.extend(waveform_augmentations())  # order 40, before the waveform norm
    if norm.spec_tfms is not None:
        setup.batch_tfms.extend(norm.spec_tfms())
    if norm.input_bn:
        setup.learner_kwargs["input_bn"] = True
    if augment in (True, "spec", "all"):
        setup.batch_tfms.append(SpecAugment(fill=norm.mask_fill))
        setup.cbs.extend(augment_callbacks())
    return setup
