"""fastspecnorm: correct, fast and reproducible normalization for audio models on fastai.

Public names (see the README): the audio core (`AudioTensor`, `AudioSpectrogram`, `AudioBlock`,
`AudioToSpec`), the normalizations (`WaveformNormalize`, `SpecNormalize`, `InstanceMinMax`,
`DbRangeNormalize`, and their math in `fastspecnorm.functional`), exact statistics
(`StatsRecorder`, `collect_stats`, `StatsCallback`), your own audio of any length
(`AudioDataLoaders.from_folder` / `from_df`, `valid_mask`, `audio_learner`) and ESC-50
(`esc50_dataloaders`, `esc50_learner`).
"""

from . import functional
from .audio import (
    AudioBlock,
    AudioCache,
    AudioLoadError,
    AudioSpectrogram,
    AudioTensor,
    AudioToSpec,
    DownmixMono,
    LoadAudio,
    Resample,
    ResizeSignal,
    crop_pad,
    downmix_mono,
    load_audio,
    resample,
    spec_shape,
)
from .audio.check import AudioFilesError, check_audio_files
from .audio.io import AUDIO_EXTENSIONS, audio_extensions
from .audio.tensors import valid_mask
from .audio.transforms import AudioDataLoader, array_layout
from .augment import AddNoise, SpecAugment, TimeShift, WaveformGain, waveform_augmentations
from .callback import StatsCallback, install_normalizer, stats_loader
from .data import AudioDataLoaders, get_audio_files
from .datasets.esc50 import (
    PRESETS,
    CrossValidationSplitter,
    ESC50Settings,
    esc50_datablock,
    esc50_dataloaders,
    esc50_learner,
    get_settings,
    read_esc50_meta,
)
from .datasets.validate import DatasetValidationError, ValidationReport, validate_esc50
from .learner import FreqBatchNorm, audio_learner
from .normalize import (
    PCEN,
    DbRangeNormalize,
    InstanceMinMax,
    SpecNormalize,
    UtteranceNormalize,
    WaveformNormalize,
    warn_level_after_waveform_norm,
)
from .stats import StatsRecorder, collect_stats

__version__ = "0.1.0"

__all__ = [
    "functional",
    "AudioTensor",
    "AudioSpectrogram",
    "AudioBlock",
    "AudioLoadError",
    "LoadAudio",
    "DownmixMono",
    "Resample",
    "ResizeSignal",
    "load_audio",
    "downmix_mono",
    "resample",
    "crop_pad",
    "AudioCache",
    "AudioToSpec",
    "spec_shape",
    "valid_mask",
    "AudioDataLoader",
    "AudioDataLoaders",
    "get_audio_files",
    "check_audio_files",
    "AudioFilesError",
    "audio_learner",
    "FreqBatchNorm",
    "WaveformNormalize",
    "SpecNormalize",
    "InstanceMinMax",
    "DbRangeNormalize",
    "PCEN",
    "UtteranceNormalize",
    "SpecAugment",
    "WaveformGain",
    "AddNoise",
    "TimeShift",
    "waveform_augmentations",
    "AUDIO_EXTENSIONS",
    "audio_extensions",
    "array_layout",
    "warn_level_after_waveform_norm",
    "StatsRecorder",
    "collect_stats",
    "validate_esc50",
    "ValidationReport",
    "DatasetValidationError",
    "StatsCallback",
    "install_normalizer",
    "stats_loader",
    "PRESETS",
    "ESC50Settings",
    "get_settings",
    "CrossValidationSplitter",
    "read_esc50_meta",
    "esc50_datablock",
    "esc50_dataloaders",
    "esc50_learner",
]
