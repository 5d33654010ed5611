"""PCEN (`functional.pcen`, `PCEN`) against librosa, and per-utterance MVN (`functional.utterance_mvn`,
`UtteranceNormalize`) against NumPy float64."""

import librosa
import numpy as np
import pytest
import torch

import fastspecnorm.functional as SF
from fastspecnorm import PCEN, AudioSpectrogram, UtteranceNormalize


def energies(shape, seed=0, low=-3, high=8):
    "Random non-negative energies, each (item, bin) row at its own level 10**low .. 10**high."
    rng = np.random.default_rng(seed)
    level = 10.0 ** rng.uniform(low, high, size=(*shape[:-1], 1))
    return rng.exponential(size=shape) * level


def librosa_pcen(S, **kwargs):
    "librosa.pcen on each (freq, time) slice of S (..., freq, time), float64."
    flat = S.reshape(-1, *S.shape[-2:])
    return np.stack([librosa.pcen(s, **kwargs) for s in flat]).reshape(S.shape)


# float32: the IIR and the exp/log steps round at about 1e-6 relative (measured 3e-6); 1e-4 is the contract.
RTOL = 1e-4


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, RTOL)])
def test_pcen_equals_librosa_with_defaults(dtype, rtol):
    S = energies((3, 40, 150))
    expected = librosa_pcen(S, sr=16000, hop_length=200)
    got = SF.pcen(torch.tensor(S, dtype=dtype))
    assert got.dtype == dtype and got.shape == S.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=rtol, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sr=8000, hop_length=64, gain=0.8, bias=10.0, power=0.25, time_constant=0.06, eps=1e-9),
        dict(sr=22050, hop_length=512),  # librosa's own defaults
        dict(sr=16000, hop_length=400, power=0.0),  # log1p branch
        dict(sr=16000, hop_length=400, bias=0.0),  # pure power-law branch
        dict(sr=44100, hop_length=441, gain=0.5, bias=1.0, power=1.0 / 3, time_constant=1.5, eps=1e-3),
    ],
)
def test_pcen_equals_librosa_with_other_parameters(kwargs):
    S = energies((2, 16, 300), seed=1)
    expected = librosa_pcen(S, **kwargs)
    got = SF.pcen(torch.tensor(S, dtype=torch.float32), **kwargs).numpy()
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-30)


def test_pcen_smoothing_coefficient_by_hand():
    # 0.4 s at 16 kHz, hop 200: t = 32 frames, b = (sqrt(1 + 4 * 32**2) - 1) / (2 * 32**2)
    assert SF.pcen_smoothing_coef(16000, 200, 0.4) == pytest.approx((np.sqrt(4097) - 1) / 2048, rel=1e-12)
    assert SF.pcen_smoothing_coef(16000, 200, 0.4) == pytest.approx(0.030765, abs=1e-6)


def test_pcen_of_silence_and_of_a_first_frame_by_hand():
    assert SF.pcen(torch.zeros(2, 3, 5)).abs().max().item() == 0.0
    # one frame: M = b * x + (1 - b) (librosa's initial state), out = sqrt(bias) * (sqrt(1 + x * (eps + M)**-gain / bias) - 1)
    x, b = 1e6, SF.pcen_smoothing_coef(16000, 200, 0.4)
    m = b * x + (1 - b)
    expected = np.sqrt(2.0) * (np.sqrt(1 + x * (1e-6 + m) ** -0.98 / 2.0) - 1)
    got = SF.pcen(torch.tensor([[x]], dtype=torch.float64)).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_pcen_batch_item_equals_item_alone():
    S = torch.tensor(energies((4, 1, 24, 80), seed=2), dtype=torch.float32)
    batch = SF.pcen(S)
    for i in range(len(S)):
        torch.testing.assert_close(batch[i], SF.pcen(S[i]), rtol=0, atol=0)


def test_pcen_ignores_padded_frames():
    S = energies((3, 1, 20, 100), seed=3)
    lengths = [100, 61, 7]
    padded = S.copy()
    padded[1, ..., 61:] = 1e12  # whatever padding holds
    padded[2, ..., 7:] = np.nan
    mask = torch.arange(100) < torch.tensor(lengths)[:, None, None, None]
    got = SF.pcen(torch.tensor(padded, dtype=torch.float32), mask=mask).numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, ..., :n], librosa_pcen(S[i, ..., :n], sr=16000, hop_length=200), rtol=RTOL)
        assert (got[i, ..., n:] == 0).all()


def test_pcen_refuses_db_input():
    with pytest.raises(ValueError, match="energies"):
        SF.pcen(torch.full((1, 4, 8), -30.0))
    with pytest.raises(ValueError, match="b must be in"):
        SF.pcen(torch.ones(1, 4, 8), b=1.5)


def test_pcen_keeps_float16_and_runs_on_cuda_when_there():
    S = torch.tensor(energies((2, 8, 30), seed=4, low=0, high=3), dtype=torch.float16)
    got = SF.pcen(S)
    assert got.dtype == torch.float16
    np.testing.assert_allclose(got.float().numpy(), librosa_pcen(S.double().numpy(), sr=16000, hop_length=200), rtol=2e-3)
    if torch.cuda.is_available():
        torch.testing.assert_close(SF.pcen(S.float().cuda()).cpu(), SF.pcen(S.float()), rtol=1e-5, atol=0)


def spec(x, unit="power", lengths=None, sr=16000, hop_length=200):
    s = AudioSpectrogram(torch.as_tensor(x, dtype=torch.float32), sr=sr, hop_length=hop_length, unit=unit)
    s.lengths = None if lengths is None else torch.tensor(lengths)
    return s


def test_pcen_transform_scales_to_int32_range_and_reads_time_settings():
    S = energies((2, 1, 16, 60), seed=5, low=-9, high=-2)  # energies of [-1, 1] audio
    x = spec(S, sr=8000, hop_length=80, lengths=[60, 33])
    out = PCEN()(x)
    assert out.unit == "pcen" and out.sr == 8000 and out.hop_length == 80 and out.lengths.tolist() == [60, 33]
    scaled = S * 2.0**62
    for i, n in enumerate([60, 33]):
        expected = librosa_pcen(scaled[i, ..., :n], sr=8000, hop_length=80)
        np.testing.assert_allclose(out[i, ..., :n].numpy(), expected, rtol=RTOL)
        assert (out[i, ..., n:] == 0).all()
    # the transform equals the function on the same scaled energies (thin wrapper)
    torch.testing.assert_close(
        PCEN(input_scale=1.0)(spec(S)).as_subclass(torch.Tensor), SF.pcen(torch.tensor(S, dtype=torch.float32))
    )


def test_pcen_transform_refuses_db_spectrograms():
    with pytest.raises(ValueError, match="to_db=False"):
        PCEN()(spec(np.zeros((1, 1, 4, 5)), unit="dB"))


# ---------------------------------------------------------------------------------------------
# per-utterance mean and variance normalization


def numpy_utterance_mvn(x, lengths=None, eps=1e-5):
    "Per item, channel and bin over its first lengths[i] frames; padding -> 0. The simplest float64 loops."
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        n = x.shape[-1] if lengths is None else lengths[i]
        for c in range(x.shape[1]):
            for f in range(x.shape[2]):
                v = x[i, c, f, :n].astype(np.float64)
                if n:
                    out[i, c, f, :n] = (v - v.mean()) / max(v.std(), eps)
    return out


@pytest.mark.parametrize("lengths", [None, [50, 23, 1, 0]])
def test_utterance_mvn_equals_numpy(lengths):
    rng = np.random.default_rng(6)
    x = rng.normal(-40, 15, size=(4, 2, 12, 50))
    x[0, 0, 3] = -100.0  # a constant bin (silence at the dB floor): 0, not NaN
    mask = None if lengths is None else torch.arange(50) < torch.tensor(lengths)[:, None, None, None]
    xt = torch.tensor(x, dtype=torch.float32)
    if lengths is not None:
        xt[1, ..., 23:] = float("nan")  # padding never counts, whatever it holds
    got = SF.utterance_mvn(xt, mask=mask).numpy()
    expected = numpy_utterance_mvn(x, lengths)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    assert (got[0, 0, 3] == 0).all()


def test_utterance_mvn_item_alone_and_transform():
    rng = np.random.default_rng(7)
    x = rng.normal(-30, 10, size=(3, 1, 8, 40))
    lengths = [40, 17, 29]
    out = UtteranceNormalize()(spec(x, unit="dB", lengths=lengths))
    assert out.unit == "std" and out.lengths.tolist() == lengths
    np.testing.assert_allclose(out.numpy(), numpy_utterance_mvn(x, lengths), rtol=0, atol=2e-5)
    for i, n in enumerate(lengths):
        alone = SF.utterance_mvn(torch.tensor(x[i : i + 1, ..., :n], dtype=torch.float32))
        torch.testing.assert_close(out[i : i + 1, ..., :n].as_subclass(torch.Tensor), alone, rtol=0, atol=1e-6)


def test_utterance_mvn_bad_mask():
    with pytest.raises(ValueError, match="broadcast"):
        SF.utterance_mvn(torch.zeros(2, 1, 4, 10), mask=torch.ones(3, 1, 1, 10, dtype=torch.bool))
