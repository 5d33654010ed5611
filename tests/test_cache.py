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
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fastai.torch_core import set_seed
from torch import Tensor

from fastspecnorm import AudioLoadError, AudioTensor, LoadAudio, esc50_dataloaders
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
    x = torch.cat(
        [torch.randn(1, 5000) * 0.3, torch.tensor([[1.2, -1.5, 1.0, -1.0, 0.0, 1 / 32768, 0.5 / 32768, 1.5 / 32768]])], dim=1
    )
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


def test_reopening_keeps_entries_and_pickles_without_the_data(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    data_file = cache.data_path
    again = open_cache(esc50, tmp_path / "c")
    assert again.data_path == data_file  # nothing rebuilt
    path = wavs(esc50)[3]
    again.get(path)
    clone = pickle.loads(pickle.dumps(again))
    assert torch.equal(clone.get(path), reference(path))
    assert len(pickle.dumps(again)) < 20_000  # no clip data and no open file travel to worker processes


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


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_switched_off_and_unwritable(esc50, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # where the default cache would go
    assert AudioCache.for_settings(esc50 / "audio", RATE) is None
    dls = make_dls(esc50, True)  # the default setting, switched off by the environment
    epoch(dls.train, 0)
    assert files_under(tmp_path / "xdg") == []
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
    return esc50_dataloaders(
        root, preset="quick", bs=4, duration=0.8, cache=cache, num_workers=num_workers, device="cpu", **kwargs
    )


def test_cached_epochs_equal_uncached_epochs(esc50, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "default"))
    cached, uncached = make_dls(esc50, tmp_path / "c"), make_dls(esc50, False)
    assert files_under(tmp_path / "c")  # the cached side built its cache there
    assert files_under(tmp_path / "default") == []  # cache=False wrote none, not even in the default folder
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


# ---------------------------------------------------------------------------------------------
# Rewrites that keep size and mtime, temporary files of killed builds


@pytest.mark.parametrize("how", ["in place", "new file renamed over it"])
def test_rewrite_with_same_size_and_restored_mtime_is_detected(write_audio, tmp_path, how):
    rng = np.random.default_rng(5)
    path = write_audio("audio/a.wav", rng.integers(-20000, 20000, 4000).astype(np.int16), sr=RATE, subtype="PCM_16")
    cache = AudioCache.for_settings(tmp_path / "audio", RATE, cache_dir=tmp_path / "c", progress=False)
    old = cache.get(path)
    before = os.stat(path)
    new_samples = rng.integers(-20000, 20000, 4000).astype(np.int16)
    if how == "in place":
        sf.write(str(path), new_samples, RATE, subtype="PCM_16")
    else:
        sf.write(str(tmp_path / "new.wav"), new_samples, RATE, subtype="PCM_16")
        os.replace(tmp_path / "new.wav", path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # what touch -r, cp -p and rsync -t do
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    expected = torch.from_numpy(sf.read(str(path), dtype="float32", always_2d=True)[0].T.copy())
    with pytest.warns(UserWarning, match="changed since the audio cache was built"):
        fresh = cache.get(path)
    assert torch.equal(fresh, expected) and not torch.equal(fresh, old)
    assert cache.build(progress=False)["decoded"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(
            AudioCache.for_settings(tmp_path / "audio", RATE, cache_dir=tmp_path / "c", progress=False).get(path), expected
        )


# A process writing a cache data file with the package's writer, killed halfway (or held there).
# It loads fastspecnorm/_io.py by path (standard library only), so it starts without torch.
DATA_WRITER = """
import importlib.util, os, signal, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("fastspecnorm_io", sys.argv[1])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
target, release, how = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

def write(f):
    f.write(bytes(64_000))  # a full-size clip's worth of bytes
    f.flush()
    if how == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    while not release.exists():
        time.sleep(0.02)

io.atomic_write(target, write)
"""


@pytest.mark.process
@pytest.mark.skipif(os.name != "posix", reason="liveness of a pid and SIGKILL need POSIX")
def test_temporary_data_file_of_a_killed_build_is_removed_by_the_next_build(esc50, tmp_path):
    cache = open_cache(esc50, tmp_path / "c")
    script, release = tmp_path / "writer.py", tmp_path / "release"
    script.write_text(DATA_WRITER)
    io_path = str(Path(__file__).resolve().parents[1] / "fastspecnorm" / "_io.py")

    def start(data_name, how):
        return subprocess.Popen([sys.executable, str(script), io_path, str(cache.folder / data_name), str(release), how])

    killed = start("data-0123456789ab.bin", "die")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    live = start("data-ba9876543210.bin", "hold")
    try:

        def temps():
            return sorted(p.name for p in cache.folder.iterdir() if p.name.endswith(".tmp"))

        deadline = time.monotonic() + 60
        while len(temps()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        left_by_killed = [n for n in temps() if n.startswith(".data-0123456789ab.bin.")]
        held_by_live = [n for n in temps() if n.startswith(".data-ba9876543210.bin.")]
        assert len(left_by_killed) == 1 and len(held_by_live) == 1
        assert (cache.folder / left_by_killed[0]).stat().st_size == 64_000
        # Nothing to rebuild: the clean-up happens anyway, and spares the live writer.
        assert cache.build(progress=False) == {"kept": 15, "decoded": 0, "dropped": 0, "failed": 0}
        assert temps() == held_by_live
    finally:
        release.touch()
        live.wait(timeout=60)
    assert live.returncode == 0


# ---------------------------------------------------------------------------------------------
# Storage type per file ("auto"): what keeps the source


def soundfile_decode(path) -> Tensor:
    "The independent reference: soundfile's float32 decode, (channels, samples)."
    return torch.from_numpy(sf.read(str(path), dtype="float32", always_2d=True)[0].T.copy())


def test_auto_storage_keeps_every_source_format(write_audio, tmp_path):
    rng = np.random.default_rng(7)
    noise = rng.uniform(-0.9, 0.9, 3001)  # odd: int16 clips need padding to 8 bytes
    files = {  # name: (data, soundfile arguments, storage type expected)
        "pcm16.wav": (noise, {"subtype": "PCM_16"}, "int16"),
        "pcm8.wav": (noise, {"subtype": "PCM_U8"}, "int16"),
        "pcm16.flac": (noise, {}, "int16"),
        "quiet24.wav": (noise * 1e-6, {"subtype": "PCM_24"}, "float32"),  # -120 dBFS: below int16's step
        "pcm32.wav": (noise, {"subtype": "PCM_32"}, "float32"),
        "loud_float.wav": (noise * 1.7, {"subtype": "FLOAT"}, "float32"),  # peaks above full scale
        "quiet_float.wav": (noise * 1e-7, {"subtype": "FLOAT"}, "float32"),
    }
    for name, (data, kwargs, _) in files.items():
        write_audio(f"audio/{name}", data, sr=RATE, **kwargs)
    cache = AudioCache.for_settings(tmp_path / "audio", RATE, cache_dir=tmp_path / "c", progress=False)
    assert cache.storage_types == {"int16": 3, "float32": 4}
    index = json.loads(cache.index_path.read_text())["entries"]
    for name, (_, _, kind) in files.items():
        path = tmp_path / "audio" / name
        assert index[name]["dtype"] == kind, name
        got = cache.get(path)
        assert torch.equal(got, soundfile_decode(path)), name  # no clipping, no rounding to silence
        assert torch.equal(got, LoadAudio(RATE, dtype="auto")(path).as_subclass(Tensor)), name  # cache off: same
    assert cache.get(tmp_path / "audio" / "loud_float.wav").abs().max() > 1.5
    assert cache.get(tmp_path / "audio" / "quiet24.wav").abs().max() > 0  # int16 would give digital silence
    assert quantize_waveform(soundfile_decode(tmp_path / "audio" / "quiet24.wav"), "int16").abs().max() == 0
    end = 0  # clips lie in name order, each starting at a multiple of 8 bytes
    for name in sorted(files):
        end = -(-end // 8) * 8 + 3001 * (2 if files[name][2] == "int16" else 4)
    assert cache.nbytes == end == 66052


def test_auto_storage_of_resampled_16_bit_clips(write_audio, tmp_path):
    "A 16-bit clip resampled: int16 while every value fits; float32 when resampling overshoots full scale."
    square = np.where(np.arange(2205) % 50 < 25, 32767, -32768).astype(np.int16)  # Gibbs overshoot once band-limited
    quiet = (np.random.default_rng(3).uniform(-0.5, 0.5, 2205) * 32767).astype(np.int16)
    loud = write_audio("audio/square.wav", square, sr=22050, subtype="PCM_16")
    soft = write_audio("audio/soft.wav", np.stack([quiet, quiet[::-1]], axis=1), sr=22050, subtype="PCM_16")
    for mono in (True, False):
        cache = AudioCache.for_settings(tmp_path / "audio", RATE, cache_dir=tmp_path / "c", mono=mono, progress=False)
        assert cache.storage_types == {"float32": 1, "int16": 1}
        resampled = AudioTensor.create(loud, sr=RATE, mono=mono).as_subclass(Tensor)
        assert resampled.abs().max() > 1.0 and torch.equal(cache.get(loud), resampled)  # kept, not clipped
        assert torch.equal(cache.get(soft), reference(soft, mono=mono)) and cache.get(soft).shape[0] == (1 if mono else 2)
        expected = np.rint(AudioTensor.create(soft, sr=RATE, mono=mono).double().numpy() * 32768) / 32768
        np.testing.assert_array_equal(cache.get(soft).double().numpy(), expected)


def test_upsampling_is_reported_once_per_build_naming_the_rates(write_audio, tmp_path):
    for name, sr in [("a.wav", 8000), ("b.wav", 8000), ("c.wav", 11025), ("d.wav", 16000), ("e.wav", 48000)]:
        write_audio(f"audio/{name}", np.zeros(800), sr=sr, subtype="PCM_16")
    for _ in range(2):  # built, then reopened: each opening reports it once
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cache = AudioCache.for_settings(tmp_path / "audio", RATE, cache_dir=tmp_path / "c", progress=False)
        messages = [str(w.message) for w in caught if "upsampled" in str(w.message)]
        assert len(messages) == 1
        assert re.search(r"2 file\(s\) at 8000 Hz, 1 file\(s\) at 11025 Hz upsampled to 16000 Hz", messages[0])
        assert "48000" not in messages[0].split("upsampled")[0]
    assert cache.source_rates == {8000: 2, 11025: 1, 16000: 1, 48000: 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing below 8 kHz: no warning
        AudioCache.for_settings(tmp_path / "audio", 8000, cache_dir=tmp_path / "c", progress=False)


def test_implausible_sample_rate_is_not_cached_and_raises_by_name(write_audio, tmp_path):
    write_audio("audio/ok.wav", np.zeros(800), sr=RATE, subtype="PCM_16")
    bad = write_audio("audio/one_hertz.wav", np.zeros(800), sr=1, subtype="PCM_16")
    with pytest.warns(UserWarning, match=r"one_hertz.wav.*1 Hz"):
        cache = AudioCache.for_settings(tmp_path / "audio", RATE, cache_dir=tmp_path / "c", progress=False)
    assert len(cache) == 1 and cache.nbytes == 800 * 2
    with pytest.raises(AudioLoadError, match=r"one_hertz\.wav.*1 Hz"):
        cache.get(bad)


# ---------------------------------------------------------------------------------------------
# issue 23: a data file truncated while a process reads it; a prebuilt cache on a read-only folder

# Opens a built cache, reads a clip (the data file is now open), truncates the data file the way
# something outside the package might, then reads every clip. With a memory map the reads past the
# new end raised SIGBUS and killed the process; in a child, such a crash fails the test, not pytest.
TRUNCATE_WHILE_OPEN = """
import os, sys, warnings
from pathlib import Path
import torch
from torch import Tensor
from fastspecnorm import AudioTensor
from fastspecnorm.audio import quantize_waveform
from fastspecnorm.audio.cache import AudioCache
audio, cache_dir = Path(sys.argv[1]), sys.argv[2]
cache = AudioCache.for_settings(audio, 16000, cache_dir=cache_dir, progress=False)
files = sorted(audio.glob("*.wav"))
first = cache.get(files[0])
os.truncate(cache.data_path, cache.nbytes // 3)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for path in files:
        expected = quantize_waveform(AudioTensor.create(path, sr=16000).as_subclass(Tensor), "auto", source=path)
        assert torch.equal(cache.get(path), expected), path
assert any("truncated" in str(w.message) for w in caught), [str(w.message) for w in caught]
print("ok", len(files))
"""


@pytest.mark.process
@pytest.mark.skipif(os.name != "posix", reason="os.truncate of an open file and SIGBUS are POSIX")
def test_data_file_truncated_while_open_is_decoded_from_the_source_never_a_crash(esc50, tmp_path):
    open_cache(esc50, tmp_path / "c")  # built here; the child only opens it
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.run(
        [sys.executable, "-c", TRUNCATE_WHILE_OPEN, str(esc50 / "audio"), str(tmp_path / "c")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, (
        f"exit {child.returncode} (-{int(signal.SIGBUS)} is SIGBUS)\n{child.stdout}{child.stderr[-3000:]}"
    )
    assert child.stdout.split() == ["ok", "15"]
    # The next build (a fresh open) sees the size mismatch and rewrites the data file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = open_cache(esc50, tmp_path / "c")
    assert os.path.getsize(again.data_path) == again.nbytes and not again.check()


def _make_read_only(folder: Path) -> None:
    """Make `folder` read-only for this process: modes for a normal user and, since root ignores
    modes, `.lock` replaced by a folder, so that opening it for writing fails (IsADirectoryError)
    as it does on a read-only mount (EROFS) or in another user's folder (EACCES)."""
    (folder / ".lock").unlink(missing_ok=True)
    (folder / ".lock").mkdir()
    for p in folder.iterdir():
        if p.is_file():
            p.chmod(0o444)
    folder.chmod(0o555)


def test_prebuilt_cache_on_a_read_only_folder_is_used_read_only(esc50, tmp_path):
    built = open_cache(esc50, tmp_path / "c")
    folder, data_name = built.folder, built.data_path.name
    _make_read_only(folder)
    try:
        before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a complete cache opens without a word
            cache = open_cache(esc50, tmp_path / "c")
        assert cache is not None and cache.data_path.name == data_name and len(cache) == 15
        paths = wavs(esc50)
        for path in paths:
            assert torch.equal(cache.get(path), reference(path))
        # A new file it lacks: said once, decoded from the source, nothing written.
        sf.write(esc50 / "audio" / "new.wav", np.zeros(SOURCE_RATE // 2, dtype=np.float32) + 0.1, SOURCE_RATE, subtype="PCM_16")
        with pytest.warns(UserWarning, match="read-only.*1 file"):
            cache = open_cache(esc50, tmp_path / "c")
        assert len(cache) == 15 and torch.equal(cache.get(esc50 / "audio" / "new.wav"), reference(esc50 / "audio" / "new.wav"))
        assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    finally:
        folder.chmod(0o755)


def test_build_reads_the_data_file_whole_only_when_its_stat_changed(esc50, tmp_path):
    # Stat first, content when the stat changed: bytes overwritten behind the same size and
    # modification time are not found by `build`, but by the checksum of the entry's first read,
    # which decodes the source instead and leaves the entry for the next build to decode again.
    cache = open_cache(esc50, tmp_path / "c")
    victim = wavs(esc50)[3]
    offset = json.loads(cache.index_path.read_text())["entries"][victim.name]["offset"]
    st = os.stat(cache.data_path)
    with open(cache.data_path, "r+b") as f:
        f.seek(offset + 100)
        f.write(b"\x33" * 300)
    os.utime(cache.data_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    fresh = AudioCache(esc50 / "audio", RATE, cache.folder)
    assert fresh.build(progress=False) == {"kept": 15, "decoded": 0, "dropped": 0, "failed": 0}
    with pytest.warns(UserWarning, match="fails its checksum"):
        assert torch.equal(fresh.get(victim), reference(victim))
    assert fresh.build(progress=False)["decoded"] == 1
    assert fresh.check() == [] and torch.equal(AudioCache(esc50 / "audio", RATE, cache.folder).get(victim), reference(victim))
