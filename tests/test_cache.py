"""Tests for `fastspecnorm.audio.cache.AudioCache` and cached vs uncached epochs.

The reference for every cached value is the uncached path: `AudioTensor.create` (decode, downmix,
resample) followed by `quantize_waveform` to the cache's storage precision. The cache must give
those values bit for bit, so the comparisons below are exact (`torch.equal`), not approximate.
Clips are 1 s at 22.05 kHz, so they are resampled (16 kHz) and cropped (0.8 s) on the way.
Storage types are checked against what soundfile decodes from generated files of each format, and
the int16 rounding against NumPy float64.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from fastai.torch_core import set_seed
from torch import Tensor

from fastspecnorm import AudioLoadError, AudioTensor, esc50_dataloaders
from fastspecnorm.audio import quantize_waveform
from fastspecnorm.audio.cache import CACHE_ENV, AudioCache, default_cache_dir
from fastspecnorm.audio.io import from_storage, to_storage
from fastspecnorm.datasets.synthetic import make_synthetic_esc50

SOURCE_RATE = 22050
RATE = 16000


@pytest.fixture(scope="module")
def source_esc50(tmp_path_factory):
    "3 classes x 5 clips, 1 s at 22.05 kHz; copy it (`esc50` fixture) before changing files."
    root = tmp_path_factory.mktemp("cache-src") / "esc50"
    return make_synthetic_esc50(root, n_classes=3, clips_per_class=5, sample_rate=SOURCE_RATE, duration=1.0, seed=1)


@pytest.fixture
def esc50(source_esc50, tmp_path):
    return shutil.copytree(source_esc50, tmp_path / "esc50")


@pytest.fixture(autouse=True)
def no_home_cache(tmp_path, monkeypatch):
    "Never write into the real user cache: the default location points into tmp_path."
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "default-cache"))


def wavs(root) -> list:
    return sorted((root / "audio").glob("*.wav"))


def reference(path, sample_rate=RATE, dtype="auto", mono=True) -> Tensor:
    wav = AudioTensor.create(path, sr=sample_rate, mono=mono).as_subclass(Tensor)
    return quantize_waveform(wav, dtype, source=path)


def open_cache(root, cache_dir, **kwargs) -> AudioCache:
    return AudioCache.for_settings(root / "audio", kwargs.pop("sample_rate", RATE), cache_dir=cache_dir, progress=False, **kwargs)


# ---------------------------------------------------------------------------------------------
# Storage precision


@pytest.mark.parametrize("dtype", ["int16", "float16", "float32"])
def test_storage_rounding_against_numpy(dtype):
    "The one rounding rule, against NumPy float64 written the simplest way (x * 32768 is exact in both)."
    x = torch.cat([torch.randn(1, 5000) * 0.3, torch.tensor([[1.2, -1.5, 1.0, -1.0, 0.0, 1 / 32768, 0.5 / 32768, 1.5 / 32768]])], dim=1)
    x64 = x.double().numpy()
    if dtype == "int16":
        expected = np.clip(np.rint(x64 * 32768), -32768, 32767) / 32768  # rint: half to even
    else:
        expected = x64.astype(dtype).astype(np.float64)
    stored = to_storage(x, dtype)
    assert stored.dtype == getattr(torch, dtype)
    np.testing.assert_array_equal(from_storage(stored).double().numpy(), expected)
    np.testing.assert_array_equal(quantize_waveform(x, dtype).double().numpy(), expected)


def test_int16_is_exact_for_16_bit_files_without_resampling(write_audio, tmp_path):
    data = np.random.default_rng(0).integers(-32768, 32768, 4000).astype(np.int16)
    path = write_audio("audio/a.wav", data, sr=RATE, subtype="PCM_16")
    cache = AudioCache.for_settings(tmp_path / "audio", RATE, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(cache.get(path), AudioTensor.create(path).as_subclass(Tensor))
    assert torch.equal(cache.get(path), torch.from_numpy(data.astype(np.float32) / 32768)[None])


# ---------------------------------------------------------------------------------------------
# Building and reading


@pytest.mark.parametrize("dtype", ["auto", "int16", "float16", "float32"])
def test_get_equals_uncached_decoding(esc50, tmp_path, dtype):
    cache = open_cache(esc50, tmp_path / "c", dtype=dtype)
    assert len(cache) == 15
    for path in wavs(esc50):
        got = cache.get(path)
        assert got.dtype == torch.float32 and got.shape == (1, RATE)
        assert torch.equal(got, reference(path, dtype=dtype))
    assert cache.nbytes == 15 * RATE * (2 if dtype == "auto" else np.dtype(dtype).itemsize)  # "auto": 16-bit sources


def test_reopening_keeps_entries_and_pickles_without_the_memory_map(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    data_file = cache.data_path
    again = open_cache(esc50, tmp_path / "c")
    assert again.data_path == data_file  # nothing rebuilt
    path = wavs(esc50)[3]
    again.get(path)
    clone = pickle.loads(pickle.dumps(again))
    assert clone._mm is None and torch.equal(clone.get(path), reference(path))
    assert len(pickle.dumps(again)) < 20_000  # the map itself never travels to worker processes


def test_touched_source_is_never_read_stale_and_is_rebuilt(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    path = wavs(esc50)[0]
    old = cache.get(path)
    # New content of the same size and format; the mtime moves forward explicitly (coarse clocks).
    data, sr = sf.read(path, dtype="int16")
    sf.write(path, -data, sr, subtype="PCM_16")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.warns(UserWarning, match="changed since the audio cache was built"):
        fresh = cache.get(path)
    assert torch.equal(fresh, reference(path)) and not torch.equal(fresh, old)
    counts = cache.build(progress=False)
    assert counts == {"kept": 14, "decoded": 1, "dropped": 0, "failed": 0}
    index = json.loads(cache.index_path.read_text())
    assert index["entries"][path.name]["mtime_ns"] == os.stat(path).st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # current again: read from the cache without a warning
        assert torch.equal(cache.get(path), reference(path))


def test_touch_alone_rebuilds_the_entry(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    path = wavs(esc50)[2]
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.build(progress=False)["decoded"] == 1


def test_added_and_removed_files(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    removed, extra = wavs(esc50)[0], esc50 / "audio" / "extra.wav"
    shutil.copy(wavs(esc50)[1], extra)
    removed.unlink()
    assert extra not in cache  # not cached yet, but readable through the cache
    assert torch.equal(cache.get(extra), reference(extra))
    assert cache.build(progress=False) == {"kept": 14, "decoded": 1, "dropped": 1, "failed": 0}
    assert extra in cache and removed not in cache


def test_sample_rate_and_dtype_select_separate_caches(esc50, tmp_path):
    at16 = open_cache(esc50, tmp_path / "c")
    at8 = open_cache(esc50, tmp_path / "c", sample_rate=8000)
    as_f16 = open_cache(esc50, tmp_path / "c", dtype="float16")
    assert len({at16.folder, at8.folder, as_f16.folder}) == 3
    path = wavs(esc50)[4]
    assert at8.get(path).shape == (1, 8000) and torch.equal(at8.get(path), reference(path, 8000))
    assert torch.equal(as_f16.get(path), reference(path, dtype="float16"))
    # An index whose settings differ from the cache's (e.g. copied by hand) is never used.
    shutil.copy(at16.index_path, at8.index_path)
    reopened = AudioCache(esc50 / "audio", 8000, at8.folder)
    assert len(reopened) == 0 and reopened.build(progress=False)["decoded"] == 15


def test_overwritten_data_is_detected_and_rebuilt(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    victim = wavs(esc50)[5]
    offset = json.loads(cache.index_path.read_text())["entries"][victim.name]["offset"]  # in bytes
    with open(cache.data_path, "r+b") as f:  # same size, different bytes in one entry
        f.seek(offset + 200)
        f.write(b"\x55" * 400)
    fresh = AudioCache(esc50 / "audio", RATE, cache.folder)
    with pytest.warns(UserWarning, match="fails its checksum"):
        got = fresh.get(victim)
    assert torch.equal(got, reference(victim))  # decoded from the source, not read corrupt
    assert fresh.check() == [victim.name]
    assert fresh.build(progress=False) == {"kept": 14, "decoded": 1, "dropped": 0, "failed": 0}
    assert fresh.check() == [] and torch.equal(AudioCache(esc50 / "audio", RATE, cache.folder).get(victim), reference(victim))


def test_truncated_data_file_is_detected_and_rebuilt(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    with open(cache.data_path, "r+b") as f:
        f.truncate(cache.nbytes // 2)
    fresh = AudioCache(esc50 / "audio", RATE, cache.folder)
    path = wavs(esc50)[-1]
    with pytest.warns(UserWarning, match="truncated or overwritten"):
        got = fresh.get(path)
    assert torch.equal(got, reference(path))
    assert fresh.build(progress=False)["decoded"] == 15
    assert os.path.getsize(fresh.data_path) == fresh.nbytes == 15 * RATE * 2


def test_unreadable_index_is_rebuilt(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    cache.index_path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        again = open_cache(esc50, tmp_path / "c")
    assert len(again) == 15 and again.check() == []
    assert not list(again.folder.glob("*.tmp")) and len(list(again.folder.glob("data-*.bin"))) == 1


def test_undecodable_and_outside_files(esc50, tmp_path):
    (esc50 / "audio" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.warns(UserWarning, match="could not be decoded"):
        cache = open_cache(esc50, tmp_path / "c")
    assert len(cache) == 15
    with pytest.raises(AudioLoadError, match="broken.wav"):
        cache.get(esc50 / "audio" / "broken.wav")
    outside = shutil.copy(wavs(esc50)[0], tmp_path / "outside.wav")
    assert torch.equal(cache.get(outside), reference(outside))
    with pytest.raises(FileNotFoundError):
        cache.get(esc50 / "audio" / "missing.wav")


# ---------------------------------------------------------------------------------------------
# Location and switching off


def test_default_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "fastspecnorm"
    for off in ("off", "0", "false", "No"):
        monkeypatch.setenv(CACHE_ENV, off)
        assert default_cache_dir() is None


def test_switched_off_and_unwritable(esc50, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert AudioCache.for_settings(esc50 / "audio", RATE) is None
    dls = make_dls(esc50, True)  # the default setting, switched off by the environment
    assert dls.train.dataset.tls[0].tfms.fs[-1].cache is None
    assert_same_batches(epoch(dls.valid, 0), epoch(make_dls(esc50, False).valid, 0))
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="cannot use the audio cache"):
        assert AudioCache.for_settings(esc50 / "audio", RATE, cache_dir=blocker, progress=False) is None


# ---------------------------------------------------------------------------------------------
# DataLoaders: a cached epoch equals an uncached one bit for bit


def epoch(dl, seed) -> list:
    set_seed(seed)
    return [(xb.clone(), yb.clone(), type(xb), dict(xb.__dict__)) for xb, yb in dl]


def assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for (xa, ya, ta, ma), (xb, yb, tb, mb) in zip(a, b, strict=True):
        assert ta is tb and ma == mb
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and type(ya) is type(yb)


def make_dls(root, cache, num_workers=0, seed=0, **kwargs):
    set_seed(seed)  # the DataLoaders' own shuffling generators are seeded at construction
    return esc50_dataloaders(root, preset="quick", bs=4, duration=0.8, cache=cache, num_workers=num_workers, device="cpu", **kwargs)


def test_cached_epochs_equal_uncached_epochs(esc50, tmp_path):
    cached, uncached = make_dls(esc50, tmp_path / "c"), make_dls(esc50, False)
    assert cached.train.dataset.tls[0].tfms.fs[-1].cache is not None
    assert uncached.train.dataset.tls[0].tfms.fs[-1].cache is None
    for seed in (1, 2):  # two training epochs: random crops differ between epochs, never between paths
        assert_same_batches(epoch(cached.train, seed), epoch(uncached.train, seed))
    assert_same_batches(epoch(cached.valid, 3), epoch(uncached.valid, 3))


def test_cached_epoch_with_two_workers(esc50, tmp_path):
    # Worker processes draw the random crops from their own seeded generators, so both sides use two.
    cached, uncached = make_dls(esc50, tmp_path / "c", num_workers=2), make_dls(esc50, False, num_workers=2)
    assert cached.train.fake_l.num_workers == 2
    assert_same_batches(epoch(cached.train, 5), epoch(uncached.train, 5))



def test_stale_entry_inside_a_batch_is_decoded(esc50, tmp_path):
    cached = make_dls(esc50, tmp_path / "c")
    path = wavs(esc50)[0]
    data, sr = sf.read(path, dtype="int16")
    sf.write(path, data // 2, sr, subtype="PCM_16")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    uncached = make_dls(esc50, False)
    with pytest.warns(UserWarning, match="changed since"):
        got = epoch(cached.valid, 0) + epoch(cached.train, 0)
    assert_same_batches(got, epoch(uncached.valid, 0) + epoch(uncached.train, 0))
