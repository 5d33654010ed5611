"""fastspecnorm: correct, fast and reproducible spectrogram normalization for audio models on fastai.

Names are imported when first used (PEP 562): `import fastspecnorm` does not import torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_NAMES = {
    ".audio": ["AudioBlock", "AudioCache", "AudioLoadError", "AudioSpectrogram", "AudioTensor", "AudioToSpec", "DownmixMono",
               "LoadAudio", "Resample", "ResizeSignal", "crop_pad", "downmix_mono", "load_audio", "resample", "spec_shape"],
    ".audio.check": ["AudioFilesError", "check_audio_files"],
    ".audio.tensors": ["valid_mask"],
    ".audio.transforms": ["AudioDataLoader"],
    ".augment": ["AddNoise", "SpecAugment", "TimeShift", "WaveformGain", "waveform_augmentations"],
    ".callback": ["StatsCallback", "install_normalizer", "stats_loader"],
    ".data": ["AudioDataLoaders", "CrossValidationSplitter", "get_audio_files"],
    ".presets": ["PRESETS", "AudioSettings", "get_settings"],
    ".datasets.esc50": ["esc50_dataloaders", "read_esc50_meta"],
    ".datasets.fsdd": ["fsdd_dataloaders"],
    ".datasets.sources": ["RECIPES", "Recipe", "SourceSpec"],
    ".datasets.validate": ["DatasetValidationError", "validate_esc50"],
    ".experiment.api": ["compare"],
    ".learner": ["AudioLearner", "FreqBatchNorm", "audio_learner", "esc50_learner"],
    ".precision": ["BF16Autocast", "bf16_native", "resolve_precision"],
    ".normalize": ["PCEN", "DbRangeNormalize", "InstanceMinMax", "SpecNormalize", "SpecNormalizer", "UtteranceNormalize",
                   "WaveformNormalize"],
    ".stats": ["StatsRecorder", "collect_stats"],
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = ["functional", *_MODULE_OF]


def __getattr__(name):
    if name == "functional":
        return import_module(".functional", __name__)
    if name in _MODULE_OF:
        value = getattr(import_module(_MODULE_OF[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
