"""Numerical edge cases, decided and tested across every normalization.

Not one module's file, on purpose: each decision below spans the modules a clip passes through
(audio/io.py, audio/spectrogram.py, functional.py, normalize.py, stats.py, callback.py), so the
decisions of docs/failures.md and the tests that pin them read together here; each module's other
tests are in its own test_<module>.py.

Decisions (see docs/failures.md, "Numerical edge cases"):
- silent clips: waveform standardization gives zeros; the spectrogram sits at the -100 dB floor;
  `instance_minmax` gives zeros; `db_range` gives 0; dataset statistics stay finite.
- constant frequency bins (std 0, e.g. all-zero mel filters): `SpecNormalize` floors the std to
  `min_std` with a warning; training values of such a bin normalize to exactly 0.
- very quiet clips: waveform standardization amplifies any clip whose std exceeds `eps` (1e-8);
  without it, a 1e-7 amplitude clip lies at the -100 dB floor like silence.
- very loud clips (clipping level and beyond full scale): finite everywhere; `db_range` clips to 1.
- float16/bfloat16: waveform and spectrogram normalizations compute in float32 and return the
  input dtype; `AudioToSpec` returns float32 spectrograms; statistics accumulate in float64.
- empty batches (batch size 0): every transform returns an empty batch of the right shape;
  `StatsRecorder.update` ignores them; a loader of only empty batches is an error.
- a `fraction` that selects less than one batch: ValueError naming the fraction, the number of
  batches and the smallest usable fraction.
- NaN/Inf: refused when loading audio and when gathering statistics; transforms do not check
  (they would propagate it).
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from fastai.data.load import DataLoader as FastaiDataLoader

import fastspecnorm.functional as SF
from fastspecnorm import (
    AudioLoadError,
    AudioSpectrogram,
    AudioTensor,
    AudioToSpec,
    DbRangeNormalize,
    InstanceMinMax,
    SpecNormalize,
    StatsCallback,
    StatsRecorder,
    WaveformNormalize,
    collect_stats,
    load_audio,
    spec_shape,
)
from fastspecnorm.stats import n_batches_for

SR = 16000
N = 4000  # 0.25 s
SPEC = dict(n_fft=256, hop_length=128, sample_rate=SR)  # linear: (1, 129, 32)
T = torch.arange(N) / SR
SINE = torch.sin(2 * math.pi * 440 * T)

CLIPS = {
    "silent": torch.zeros(N),
    "dc": torch.full((N,), 0.25),  # constant, not zero: also "silent" after standardization
    "quiet": 1e-7 * SINE,  # below one 16-bit step
    "clipping": torch.sign(SINE),  # a square wave at full scale
    "beyond_full_scale": 8.0 * SINE,  # float WAV can exceed [-1, 1]
    "normal": 0.1 * SINE + 0.01 * torch.randn(N, generator=torch.Generator().manual_seed(0)),
}
NAMES = list(CLIPS)


def wave_batch(dtype=torch.float32) -> AudioTensor:
    return AudioTensor(torch.stack([CLIPS[n] for n in NAMES])[:, None].to(dtype), sr=SR)


def global_norm(spec):
    rec = StatsRecorder((0, 2, 3)).update(spec)
    return SpecNormalize.from_stats(rec)


def channel_norm(spec):
    rec = StatsRecorder((0, 1, 3)).update(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # floored bins, tested below
        return SpecNormalize.from_stats(rec)


NORMS = {
    "none": lambda spec: None,
    "global": global_norm,
    "channel": channel_norm,
    "instance": lambda spec: InstanceMinMax(),
    "dbrange": lambda spec: DbRangeNormalize(),
}


def pipeline(norm: str, waveform_norm: bool, dtype=torch.float32, spec_kwargs=SPEC):
    "waveforms -> (WaveformNormalize) -> AudioToSpec -> normalization, as in the ESC-50 DataBlock."
    x = wave_batch(dtype)
    if waveform_norm:
        x = WaveformNormalize()(x)
    spec = AudioToSpec(**spec_kwargs)(x)
    tfm = NORMS[norm](spec)
    return spec, (spec if tfm is None else tfm(spec))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("waveform_norm", [True, False])
@pytest.mark.parametrize("norm", list(NORMS))
def test_every_normalization_is_finite_on_degenerate_clips(norm, waveform_norm, dtype):
    spec, out = pipeline(norm, waveform_norm, dtype)
    assert isinstance(out, AudioSpectrogram)
    assert out.shape == (len(NAMES), 1, *spec_shape(N, 256, 128))
    assert out.dtype == torch.float32  # spectrograms of half-precision audio are float32
    assert torch.isfinite(out).all()
    silent = [NAMES.index("silent")] + ([NAMES.index("dc")] if waveform_norm else [])
    assert (spec[silent] == -100.0).all()  # the AmplitudeToDB floor (power clamped at 1e-10)
    if norm == "instance":
        assert out.min() >= 0 and out.max() <= 1
        assert (out[silent] == 0).all()
        loud = NAMES.index("clipping")
        assert out[loud].min() == 0 and out[loud].max() == 1
    if norm == "dbrange":
        assert out.min() >= 0 and out.max() <= 1
        assert (out[silent] == 0).all()  # -100 dB minus the 20 dB reference is below the range
        if not waveform_norm:
            assert (out[NAMES.index("beyond_full_scale")].amax() == 1.0).all()  # clipped at the top
    if norm in ("global", "channel"):
        # Standardized over the whole batch: mean 0 and (unfloored bins) std 1.
        red = (0, 2, 3) if norm == "global" else (0, 1, 3)
        np.testing.assert_allclose(out.double().mean(red).numpy(), 0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_waveform_standardization_decisions(dtype):
    x = wave_batch(dtype)
    y = WaveformNormalize()(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    std = y.float().std(-1, correction=0).flatten()
    for name in ("silent", "dc"):
        assert (y[NAMES.index(name)] == 0).all(), f"{name} must become exact zeros"
    atol = 1e-5 if dtype == torch.float32 else 2e-3
    for name in ("clipping", "beyond_full_scale", "normal"):
        assert abs(float(std[NAMES.index(name)]) - 1) < atol
    if dtype == torch.float32:
        # A 1e-7 clip has std above eps=1e-8: it is amplified to unit std, like any other clip ...
        assert abs(float(std[NAMES.index("quiet")]) - 1) < 1e-4
        # ... while one below eps counts as silence.
        tiny = SF.standardize_waveform(1e-9 * SINE[None])
        assert (tiny == 0).all()
    assert torch.equal(x, wave_batch(dtype)), "input modified in place"


def test_quiet_clip_without_waveform_norm_looks_silent_in_db():
    spec = AudioToSpec(**SPEC)(AudioTensor(CLIPS["quiet"][None, None], sr=SR))
    assert (spec <= -99.0).float().mean() > 0.99


def test_per_item_results_do_not_depend_on_the_batch():
    "Silent and loud neighbours change nothing for per-item normalizations."
    x = WaveformNormalize()(wave_batch())
    spec = AudioToSpec(**SPEC)(x)
    for tfm in (InstanceMinMax(), DbRangeNormalize()):
        batch = tfm(spec)
        for i in range(len(NAMES)):
            alone = tfm(AudioSpectrogram(spec[i : i + 1]))
            torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=1e-6)


def test_constant_frequency_bins_are_floored_with_a_warning():
    "All-zero mel filters give bins at -100 dB in every clip: std 0 in per-channel statistics."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchaudio: "mel filterbank has all zero values"
        tospec = AudioToSpec(n_mels=64, n_fft=256, hop_length=256, sample_rate=SR)
    spec = tospec(WaveformNormalize()(wave_batch()))
    rec = StatsRecorder((0, 1, 3)).update(spec)
    const = (spec[:, 0] == -100).all(-1).all(0).as_subclass(torch.Tensor)  # bins at the floor in every clip and frame
    assert const.any()
    assert (rec.std[0, 0, const, 0] == 0).all()
    with pytest.warns(UserWarning, match=r"below min_std=1e-05 .* floored to min_std"):
        norm = SpecNormalize.from_stats(rec)
    assert (norm.std >= 1e-5).all()
    out = norm(spec)
    assert torch.isfinite(out).all()
    assert (out[:, :, const] == 0).all()  # centred, not blown up
    # The other bins are standardized as usual.
    rest = out[:, :, ~const].double()
    np.testing.assert_allclose(rest.mean((0, 1, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(rest.std((0, 1, 3), correction=0).numpy(), 1, rtol=1e-4)
    # decodes inverts encodes, floored bins included
    torch.testing.assert_close(norm.decodes(out), spec, rtol=0, atol=1e-3)


def test_dataset_of_silence():
    spec = AudioToSpec(**SPEC)(AudioTensor(torch.zeros(3, 1, N), sr=SR))
    for red_dims in ((0, 2, 3), (0, 1, 3)):
        rec = StatsRecorder(red_dims).update(spec)
        assert (rec.std == 0).all() and (rec.mean == -100).all()
        with pytest.warns(UserWarning, match="floored"):
            out = SpecNormalize.from_stats(rec)(spec)
        assert (out == 0).all()


def test_float16_normalize_is_float32_math_cast_back():
    g = torch.Generator().manual_seed(1)
    spec = torch.randn(4, 1, 16, 10, generator=g) * 15 - 50
    mean = spec.mean((0, 3), keepdim=True)
    std = spec.std((0, 3), keepdim=True)
    half = spec.half()
    out = SF.normalize(half, mean, std)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, SF.normalize(half.float(), mean, std).half(), rtol=0, atol=0)
    back = SF.denormalize(out, mean, std)
    assert back.dtype == torch.float16
    torch.testing.assert_close(back.float(), spec, rtol=0, atol=0.1)
    for fn in (SF.instance_minmax, SF.db_range, SF.standardize_waveform):
        y = fn(half)
        assert y.dtype == torch.float16 and torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), fn(half.float()), rtol=0, atol=2e-3)


def test_float16_statistics_are_exact_float64():
    g = torch.Generator().manual_seed(2)
    xs = [(torch.randn(n, 1, 8, 5, generator=g) * 20 - 40).half() for n in (3, 1, 4)]
    rec = StatsRecorder((0, 2, 3))
    for x in xs:
        rec.update(x)
    ref = np.concatenate([x.double().numpy() for x in xs])
    np.testing.assert_allclose(rec.mean.numpy().ravel(), [ref.mean()], rtol=1e-6)
    np.testing.assert_allclose(rec.std.numpy().ravel(), [ref.std()], rtol=1e-6)
    with pytest.raises(ValueError, match="NaN or Inf"):
        StatsRecorder().update(torch.tensor([[[[1.0, float("inf")]]]]).half())


def test_empty_batches_everywhere():
    empty_wave = AudioTensor(torch.zeros(0, 1, N), sr=SR)
    assert WaveformNormalize()(empty_wave).shape == (0, 1, N)
    for kwargs in (SPEC, {**SPEC, "top_db": 80.0}, {**SPEC, "n_mels": 32}):
        spec = AudioToSpec(**kwargs)(empty_wave)
        assert isinstance(spec, AudioSpectrogram)
        assert spec.shape == (0, 1, *spec_shape(N, 256, 128, kwargs.get("n_mels")))
    empty_spec = AudioSpectrogram(torch.zeros(0, 1, 129, 32))
    norm = SpecNormalize(torch.zeros(1, 1, 129, 1), torch.ones(1, 1, 129, 1))
    for tfm in (InstanceMinMax(), DbRangeNormalize(), norm):
        assert tfm(empty_spec).shape == (0, 1, 129, 32)
    # Statistics: an empty batch changes nothing; only empty batches is an error.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 1, 4, 6, generator=g)
    batches = [(torch.zeros(0, 1, 4, 6), 0), (x[:2], 0), (torch.zeros(0, 1, 4, 6), 0), (x[2:], 0)]
    rec = collect_stats(batches, progress=False)
    ref = StatsRecorder().update(x)
    assert rec.n_batches == 2
    torch.testing.assert_close(rec.mean, ref.mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(rec.std, ref.std, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="saw no values"):
        collect_stats([(torch.zeros(0, 1, 4, 6), 0)] * 3, progress=False)


@pytest.mark.parametrize("fraction,n_batches", [(0.1, 7), (1e-9, 3), (0.01, 50), (0.2, 4)])
def test_fraction_below_one_batch_is_a_clear_error(fraction, n_batches):
    with pytest.raises(ValueError) as err:
        n_batches_for(n_batches, fraction)
    msg = str(err.value)
    assert f"fraction={fraction!r}" in msg and f"{n_batches} batch" in msg
    smallest = float(re.search(rf"fraction >= 1/{n_batches} \(([0-9.e-]+)\)", msg).group(1))
    assert smallest >= 1 / n_batches and n_batches_for(n_batches, smallest) == 1


@pytest.mark.parametrize("n", [1, 3, 7, 10, 49, 100])
def test_fraction_of_exactly_one_batch_and_rounding(n):
    assert n_batches_for(n, 1 / n) == 1
    assert n_batches_for(n, 1.0) == n
    assert n_batches_for(10, 0.3) == 3  # 0.3 * 10 is 3.0000000000000004 in floating point


def test_collect_stats_and_callback_refuse_a_tiny_fraction():
    x = torch.randn(20, 1, 4, 6)
    dl = FastaiDataLoader([(x[i], 0) for i in range(20)], bs=4)  # 5 batches
    with pytest.raises(
        ValueError, match=r"fraction=0.1 of 5 batch\(es\) selects less than one batch; use fraction >= 1/5 \(0.2\)"
    ):
        collect_stats(dl, fraction=0.1, progress=False)
    assert collect_stats(dl, fraction=0.2, progress=False).n_batches == 1
    StatsCallback(fraction=0.001)  # a valid fraction: whether it selects a batch depends on the loader
    for bad in (0, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="fraction must be in"):
            StatsCallback(fraction=bad)


def test_nan_is_refused_when_loading_and_gathering_statistics(tmp_path):
    import soundfile as sf

    data = np.zeros(100, np.float32)
    data[3] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, data, SR, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="nan.wav"):
        load_audio(path)
    with pytest.raises(ValueError, match="1 NaN or Inf"):
        StatsRecorder().update(torch.tensor(data).reshape(1, 1, 1, -1))
    # Transforms do not check: NaN in, NaN out (documented; the loaders never produce it).
    assert torch.isnan(SF.db_range(torch.tensor([float("nan")]))).all()
