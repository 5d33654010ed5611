"""The audio layer: tensor types, file reading and resampling, the decoded-audio cache, waveform
Transforms and spectrograms; it uses no other public module of the package."""

from .cache import AudioCache
from .io import AudioLoadError, crop_pad, downmix_mono, load_audio, quantize_waveform, resample
from .spectrogram import AudioToSpec, power_to_db, spec_shape, spectrogram
from .tensors import AudioSpectrogram, AudioTensor
from .transforms import AudioBlock, DownmixMono, LoadAudio, Resample, ResizeSignal

__all__ = [
    "AudioTensor",
    "AudioSpectrogram",
    "AudioLoadError",
    "load_audio",
    "downmix_mono",
    "resample",
    "crop_pad",
    "quantize_waveform",
    "AudioCache",
    "LoadAudio",
    "DownmixMono",
    "Resample",
    "ResizeSignal",
    "AudioBlock",
    "AudioToSpec",
    "spectrogram",
    "power_to_db",
    "spec_shape",
]
