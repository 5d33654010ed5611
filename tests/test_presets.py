"""Presets: the loaders' `AudioSettings` and the comparison's `Training`, by name, with overrides."""

import importlib
import math

import pytest

from fastspecnorm import get_settings
from fastspecnorm.presets import AudioSettings, Training, get_preset, get_training


def test_presets_and_overrides():
    blog, quick = get_settings("blog"), get_settings("quick")
    # the reference experiment's numbers (ANCHORS.md): 16 kHz, n_fft 400, hop 200, linear, bs 64, 20 epochs
    assert (blog.sample_rate, blog.n_fft, blog.hop_length, blog.n_mels, blog.bs) == (16000, 400, 200, None, 64)
    assert get_training("blog") == Training(epochs=20, lr=None, augment=False)
    assert (quick.sample_rate, quick.n_fft, quick.hop_length, quick.n_mels, quick.bs) == (16000, 1024, 400, 64, 16)
    assert get_training("quick").epochs == 8
    assert get_settings("quick", n_mels=128).n_mels == 128
    with pytest.raises(TypeError, match="n_mel"):
        get_settings("quick", n_mel=128)
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        get_settings("fast")


def test_training_knobs_are_not_audio_settings():
    # The loaders' settings hold no training knob; each override goes to the dataclass that has it.
    assert not {"epochs", "lr", "augment"} & set(AudioSettings.__dataclass_fields__)
    settings, training = get_preset("quick", bs=8, n_mels=32, epochs=2, lr=0.01, augment="spec")
    assert (settings.bs, settings.n_mels) == (8, 32)
    assert training == Training(epochs=2, lr=0.01, augment=True)  # "spec" is True's name
    with pytest.raises(TypeError, match=r"epochs: fields of Training; get_preset takes both"):
        get_settings("quick", epochs=2)
    with pytest.raises(TypeError, match=r"\['bogus'\].*'augment'.*'bs'.*'epochs'"):
        get_preset("quick", bogus=1)  # the known names of both listed
    for bad in ({"epochs": 0}, {"epochs": 100_001}, {"lr": math.inf}, {"lr": -1.0}, {"augment": "sometimes"}):
        with pytest.raises(ValueError, match=f"setting {next(iter(bad))}="):
            get_training("quick", **bad)


def test_the_default_rate_is_one_value_in_the_settings_and_the_spectrogram():
    "Defined twice to keep presets -> spectrogram one-way: a batch without a rate and a resolved preset agree."
    from fastspecnorm import presets

    spectrogram = importlib.import_module("fastspecnorm.audio.spectrogram")  # the module, not the function of that name
    assert presets.DEFAULT_SAMPLE_RATE == spectrogram.DEFAULT_SAMPLE_RATE == 16000
