"""Train-only augmentations (`fastspecnorm.augment`): SpecAugment masks and fastai's MixUp."""

import numpy as np
import pytest
import torch
from fastai.callback.mixup import MixUp
from fastai.learner import Learner

from fastspecnorm import AudioSpectrogram, SpecAugment, StatsCallback, esc50_dataloaders, esc50_learner
from fastspecnorm.augment import augment_callbacks, band_mask, mask_bands
from fastspecnorm.experiment.norms import NORMS, norm_setup

TINY = {"preset": "quick", "duration": 1.0, "bs": 4, "num_workers": 0}
FILL = 12345.0  # a value no spectrogram holds, so masked positions are visible


def plain(x):
    return x.as_subclass(torch.Tensor).detach().cpu()


def test_band_mask_widths_and_valid_extent():
    torch.manual_seed(0)
    valid = torch.tensor([100, 40, 10, 0])
    m = band_mask(4, 100, n_masks=1, max_width=0.2, valid=valid)
    assert m.shape == (4, 100) and m.dtype == torch.bool
    for i, n in enumerate(valid.tolist()):
        row = m[i].nonzero().flatten()
        assert row.numel() <= int(0.2 * n)  # one band of at most 20% of the valid extent
        if row.numel():
            assert row.max() < n and (row.diff() == 1).all()  # contiguous, inside the valid frames
    many = band_mask(2000, 50, n_masks=1, max_width=0.2)
    widths = many.sum(1)
    assert widths.min() == 0 and widths.max() == 10  # widths 0..floor(0.2 * 50), both ends drawn
    assert many.any(0).all()  # every position can be masked
    with pytest.raises(ValueError, match="fraction"):
        band_mask(1, 10, 1, 1.5)


def test_mask_bands_fills_by_hand_and_mean_per_bin():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, 4, 6)).astype(np.float32)
    freq = torch.tensor([[False, True, False, False], [False] * 4])
    time = torch.tensor([[False] * 6, [False, False, True, True, False, False]])
    got = plain(mask_bands(AudioSpectrogram(torch.tensor(x)), freq, time, fill=-7.0)).numpy()
    expected = x.copy()
    expected[0, :, 1, :] = -7.0
    expected[1, :, :, 2:4] = -7.0
    np.testing.assert_array_equal(got, expected)
    # "mean": each item's own mean per bin over its valid frames (item 1: the first 5 frames)
    valid = torch.tensor([6, 5])
    vmask = (torch.arange(6) < valid[:, None])[:, None, None, :]
    got = plain(mask_bands(AudioSpectrogram(torch.tensor(x)), freq, time, fill="mean", valid=vmask)).numpy()
    expected = x.copy()
    expected[0, :, 1, :] = x[0, :, 1, :].mean()
    expected[1, :, :, 2:4] = x[1, :, :, :5].mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_spec_augment_masks_valid_frames_only_and_keeps_metadata():
    torch.manual_seed(1)
    x = AudioSpectrogram(torch.randn(8, 1, 64, 50), sr=16000, hop_length=400, unit="std")
    x.lengths = torch.tensor([50, 50, 30, 30, 20, 20, 10, 10])
    out = SpecAugment(n_freq_masks=2, max_freq_width=0.2, n_time_masks=2, max_time_width=0.2, fill=FILL)(x, split_idx=0)
    assert out.unit == "std" and out.hop_length == 400 and out.lengths is x.lengths
    masked = plain(out) == FILL
    assert masked.any()
    for i, n in enumerate(x.lengths.tolist()):
        assert not masked[i, ..., n:].any()  # padding untouched
    kept = ~masked
    assert torch.equal(plain(out)[kept], plain(x)[kept])  # everything else as it was
    assert not (plain(x) == FILL).any()  # the input is not modified


def test_spec_augment_is_train_only_in_a_dataloader(tiny_esc50):
    aug = esc50_dataloaders(tiny_esc50, batch_tfms=[SpecAugment(fill=FILL)], **TINY)
    ref = esc50_dataloaders(tiny_esc50, **TINY)
    for a, r in zip(aug.valid, ref.valid, strict=True):  # validation: untouched, batch for batch
        assert torch.equal(plain(a[0]), plain(r[0]))
    assert any((plain(b[0]) == FILL).any() for b in aug.train)  # training: masked


def test_statistics_pass_never_sees_augmented_batches(tiny_esc50):
    def stats(batch_tfms, cbs=()):
        dls = esc50_dataloaders(tiny_esc50, batch_tfms=batch_tfms, **TINY)
        cb = StatsCallback(red_dims=(0, 1, 3))
        learn = esc50_learner(dls, cbs=[cb, *cbs])
        learn.fit(0)
        return cb.stats_recorder, dls

    ref, _ = stats([])
    rec, dls = stats([SpecAugment(fill=FILL)], augment_callbacks())
    torch.testing.assert_close(rec.mean, ref.mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(rec.std, ref.std, rtol=1e-6, atol=0)
    assert ref.std.max() < FILL / 100  # a masked batch would have moved these
    # and the augmentation runs after the installed normalizer, on normalized values
    order = [type(t).__name__ for t in dls.train.after_batch.fs]
    assert order.index("SpecNormalize") < order.index("SpecAugment")


def test_mixup_is_fastais_and_leaves_validation_untouched(tiny_esc50):
    (cb,) = augment_callbacks(mixup_alpha=0.4)
    assert isinstance(cb, MixUp)
    dls = esc50_dataloaders(tiny_esc50, **TINY)
    torch.manual_seed(0)
    learn = esc50_learner(dls, cbs=[cb])
    plain_learn = Learner(dls, learn.model, loss_func=learn.loss_func)
    np.testing.assert_allclose(learn.validate(), [plain_learn.validate()[0], learn.validate()[1]], rtol=1e-6)


def test_mixup_blends_training_inputs(tiny_esc50):
    from fastai.callback.core import Callback

    class Before(Callback):  # fastai keys callbacks by class name: one class each
        order = -10  # before MixUp (0)

        def __init__(self):
            self.seen = []

        def before_batch(self):
            if self.training:
                self.seen.append(plain(self.xb[0]).clone())

    class After(Before):
        order = 100

    (mixup,) = augment_callbacks()
    before, after = Before(), After()
    dls = esc50_dataloaders(tiny_esc50, **TINY)
    learn = esc50_learner(dls, cbs=[mixup, before, after])
    torch.manual_seed(0)
    learn.fit(1, lr=0)
    x, mixed, lam = before.seen[-1].double(), after.seen[-1].double(), plain(mixup.lam).double()
    assert (lam >= 0.5).all() and (lam < 1).any()
    for i in range(len(x)):  # each input is lam * its own + (1 - lam) * some item of the batch
        err = [(mixed[i] - (lam[i] * x[i] + (1 - lam[i]) * x[j])).abs().max() for j in range(len(x))]
        assert min(err) < 1e-3
    # the shuffled partner is another item for some step (a random permutation may fix all four)
    assert any(not torch.equal(b, a) for b, a in zip(before.seen, after.seen, strict=True))


@pytest.mark.parametrize("norm", list(NORMS))
def test_norm_setup_adds_augmentations_with_the_norms_fill(norm):
    setup = norm_setup(norm, augment=True)
    aug = [t for t in setup.batch_tfms if isinstance(t, SpecAugment)]
    assert len(aug) == 1 and aug[0].fill == NORMS[norm].mask_fill and setup.batch_tfms[-1] is aug[0]
    assert aug[0].split_idx == 0 and aug[0].order > 99
    assert any(isinstance(cb, MixUp) for cb in setup.cbs)
    plain_setup = norm_setup(norm)
    assert not any(isinstance(t, SpecAugment) for t in plain_setup.batch_tfms)
    assert not any(isinstance(cb, MixUp) for cb in plain_setup.cbs)


def test_fills_by_norm():
    # the value that carries no information after each normalization (see Norm.mask_fill)
    assert {n: NORMS[n].mask_fill for n in NORMS} == {
        "none": -100.0,
        "global": 0.0,
        "channel": 0.0,
        "instance": 0.0,
        "dbrange": 0.0,
        "pcen": 0.0,
        "utterance": 0.0,
        "bn": "mean",
    }


def test_spec_augment_bad_settings():
    with pytest.raises(ValueError, match="fraction"):
        SpecAugment(max_time_width=5)
    with pytest.raises(ValueError, match="fill"):
        SpecAugment(fill="median")
    with pytest.raises(TypeError, match="AudioSpectrogram"):
        SpecAugment()(torch.zeros(1, 1, 4, 4), split_idx=0)


# ---------------------------------------------------------------------------------------------
# Waveform augmentations (issue 20): train-only, lengths-aware, against NumPy by hand


def _padded_wave(seed=0):
    from fastspecnorm import AudioTensor

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 2, 900, generator=g)
    lengths = torch.tensor([900, 700, 500, 300, 100, 900])
    x = x * (torch.arange(900)[None, None] < lengths[:, None, None])
    res = AudioTensor(x, sr=16000)
    res.lengths = lengths
    return res


def test_waveform_gain_scales_valid_samples_within_bounds():
    from fastspecnorm.augment import WaveformGain

    x = _padded_wave()
    torch.manual_seed(0)
    out = WaveformGain(max_gain_db=6.0, p=1.0)(x, split_idx=0)
    ratio = plain(out)[:, 0, 0] / plain(x)[:, 0, 0]
    gain_db = 20 * np.log10(ratio.numpy())
    assert (np.abs(gain_db) <= 6.0 + 1e-4).all() and np.ptp(gain_db) > 0.1  # drawn per clip, within +-6 dB
    torch.testing.assert_close(plain(out), plain(x) * ratio[:, None, None])  # one factor per clip
    assert out.lengths is x.lengths and out.sr == 16000
    assert WaveformGain(p=1.0)(x, split_idx=1) is x  # validation: untouched


def test_add_noise_hits_the_snr_and_spares_padding():
    from fastspecnorm.augment import AddNoise

    x = _padded_wave()
    x[1, 1] = 0.0  # a silent channel of a clip that is not silent
    for snr_db in (0.0, 20.0, 37.5):
        torch.manual_seed(0)
        out = AddNoise(min_snr_db=snr_db, max_snr_db=snr_db, p=1.0)(x, split_idx=0)
        assert type(out) is type(x) and out.lengths is x.lengths and out.sr == 16000
        noise = (plain(out) - plain(x)).numpy().astype(np.float64)
        for i, n in enumerate(x.lengths.tolist()):
            for c in range(2):
                sig = plain(x)[i, c, :n].numpy().astype(np.float64)
                if not sig.any():  # a silent channel gets no noise
                    assert (noise[i, c] == 0).all()
                    continue
                # the SNR over the channel's valid samples, in NumPy float64: exact up to the float32
                # rounding of the noisy samples (6e-8 of the signal, 5e-6 of the noise at 37.5 dB)
                snr = 10 * np.log10(np.sum(sig**2) / np.sum(noise[i, c, :n] ** 2))
                assert abs(snr - snr_db) < 1e-3
            assert (noise[i, :, n:] == 0).all()  # padding untouched
    silent = x * 0
    assert (plain(AddNoise(p=1.0)(silent, split_idx=0)) == 0).all()
    assert torch.equal(plain(AddNoise(p=0.0)(x, split_idx=0)), plain(x))  # not chosen: no noise


def test_add_noise_half_precision_is_noised_in_float32():
    from fastspecnorm import AudioTensor
    from fastspecnorm.augment import AddNoise

    x = AudioTensor(torch.randn(2, 1, 80000, generator=torch.Generator().manual_seed(1)).half(), sr=16000)
    out = AddNoise(min_snr_db=10.0, max_snr_db=10.0, p=1.0)(x, split_idx=0)
    assert out.dtype == torch.float16  # energies of 80000 samples overflow float16 (65504): computed in float32
    sig, noise = plain(x).double().numpy(), (plain(out).double() - plain(x).double()).numpy()
    for i in range(2):  # float16 rounding of the noisy samples (relative 5e-4 of each) moves the SNR < 0.01 dB
        assert abs(10 * np.log10(np.sum(sig[i] ** 2) / np.sum(noise[i] ** 2)) - 10.0) < 1e-2


def test_time_shift_rotates_within_each_clip():
    from fastspecnorm.augment import TimeShift

    x = _padded_wave()
    torch.manual_seed(0)
    out = TimeShift(max_shift=0.3, p=1.0)(x, split_idx=0)
    shifts = []
    for i, n in enumerate(x.lengths.tolist()):
        clip, got = plain(x)[i, :, :n].numpy(), plain(out)[i, :, :n].numpy()
        found = [s for s in range(-n + 1, n) if np.array_equal(np.roll(clip, s, axis=-1), got)]
        assert found and min(abs(s) for s in found) <= int(0.3 * n)
        shifts.append(found[0])
        assert np.array_equal(plain(out)[i, :, n:].numpy(), plain(x)[i, :, n:].numpy())  # padding as it was
    assert any(s != 0 for s in shifts)


def test_waveform_augmentations_helper_and_bad_settings():
    from fastspecnorm.augment import AddNoise, TimeShift, WaveformGain, waveform_augmentations

    tfms = waveform_augmentations()
    assert [type(t) for t in tfms] == [WaveformGain, AddNoise, TimeShift]
    assert all(t.split_idx == 0 and t.order < 50 for t in tfms)  # train only, before WaveformNormalize
    with pytest.raises(ValueError, match="probability"):
        WaveformGain(p=2)
    with pytest.raises(ValueError, match="min_snr_db"):
        AddNoise(30, 10)
    with pytest.raises(ValueError, match="batch transform"):
        TimeShift()(_padded_wave()[0], split_idx=0)


@pytest.mark.parametrize("norm", list(NORMS))
def test_norm_setup_augment_kinds(norm):
    from fastspecnorm.augment import AddNoise, TimeShift, WaveformGain

    def kinds(augment):
        setup = norm_setup(norm, augment=augment)
        names = [type(t).__name__ for t in setup.batch_tfms]
        return names, any(isinstance(cb, MixUp) for cb in setup.cbs)

    plain_names, _ = kinds(False)
    wave = [WaveformGain.__name__, AddNoise.__name__, TimeShift.__name__]
    assert kinds("waveform") == (wave + plain_names, False)  # no SpecAugment, no mixup
    assert kinds("all") == (wave + plain_names + ["SpecAugment"], True)
    assert kinds("spec") == kinds(True) == (plain_names + ["SpecAugment"], True)


def test_waveform_augmentations_are_train_only_before_the_waveform_norm_and_unseen_by_statistics(tiny_esc50):
    from fastspecnorm.augment import waveform_augmentations

    def stats(batch_tfms):
        dls = esc50_dataloaders(tiny_esc50, batch_tfms=batch_tfms, **TINY)
        cb = StatsCallback(red_dims=(0, 1, 3))
        esc50_learner(dls, cbs=[cb]).fit(0)
        return cb.stats_recorder, dls

    ref, ref_dls = stats([])
    rec, dls = stats(waveform_augmentations(max_gain_db=20, snr_db=(0, 0), max_shift=0.5, p=1.0))
    torch.testing.assert_close(rec.mean, ref.mean, rtol=1e-6, atol=0)  # 0 dB SNR noise would have moved these
    torch.testing.assert_close(rec.std, ref.std, rtol=1e-6, atol=0)
    for a, r in zip(dls.valid, ref_dls.valid, strict=True):  # validation: untouched, batch for batch
        assert torch.equal(plain(a[0]), plain(r[0]))
    order = [type(t).__name__ for t in dls.train.after_batch.fs]
    assert order.index("TimeShift") < order.index("WaveformNormalize") < order.index("AudioToSpec")
