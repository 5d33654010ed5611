"""Your own audio: variable-length batches (lengths, masks, padding never counted), the generic
loaders, the learner, prediction on any file and the export round trip.

References are independent: torchaudio's Spectrogram + AmplitudeToDB on each clip alone, NumPy
float64 statistics of the concatenated frames, nn.BatchNorm2d.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio
from fastai.torch_core import TensorCategory

import fastspecnorm.functional as SF
from fastspecnorm import (
    AudioDataLoaders,
    AudioFilesError,
    AudioSpectrogram,
    AudioTensor,
    AudioToSpec,
    DbRangeNormalize,
    FreqBatchNorm,
    InstanceMinMax,
    SpecNormalize,
    StatsCallback,
    WaveformNormalize,
    audio_learner,
    check_audio_files,
    collect_stats,
    stats_loader,
    valid_mask,
)
from fastspecnorm.audio.tensors import valid_mask_or_none

N_FFT, HOP = 256, 128
SPEC = {"n_fft": N_FFT, "hop_length": HOP}


def _padded_batch(clips: list[np.ndarray], sr: int = 16000) -> AudioTensor:
    "Mono clips (samples,) zero-padded to the longest, as AudioDataLoader makes them."
    n = max(len(c) for c in clips)
    x = torch.zeros(len(clips), 1, n)
    for i, c in enumerate(clips):
        x[i, 0, : len(c)] = torch.from_numpy(c.astype(np.float32))
    res = AudioTensor(x, sr=sr)
    res.lengths = torch.tensor([len(c) for c in clips])
    return res


def _alone_db(clip: torch.Tensor) -> torch.Tensor:
    "Reference: torchaudio Spectrogram + AmplitudeToDB of one clip (channels, samples)."
    spec = torchaudio.transforms.Spectrogram(n_fft=N_FFT, hop_length=HOP, power=2.0)(clip)
    return torchaudio.transforms.AmplitudeToDB()(spec)


@pytest.fixture
def clips():
    rng = np.random.default_rng(0)
    lengths = [3000, 1234, 2600, 700]
    return [(0.1 + i) * rng.standard_normal(n) + np.sin(np.arange(n) * 0.05 * (i + 1)) + 0.3 for i, n in enumerate(lengths)]


# ---------------------------------------------------------------------------------------------
# Lengths and masks


def test_valid_mask_shapes_and_default():
    spec = AudioSpectrogram(torch.zeros(3, 1, 5, 7))
    assert valid_mask(spec).shape == (3, 1, 1, 7) and valid_mask(spec).all()
    spec.lengths = torch.tensor([7, 2, 0])
    expected = torch.tensor([[True] * 7, [True] * 2 + [False] * 5, [False] * 7])
    assert torch.equal(valid_mask(spec)[:, 0, 0], expected)
    wav = AudioTensor(torch.zeros(2, 1, 4), sr=16000)
    wav.lengths = torch.tensor([4, 1])
    assert valid_mask(wav).shape == (2, 1, 4) and valid_mask(wav).sum() == 5
    part = spec[:2]  # a slice keeps the batch's lengths: refused, not silently wrong
    with pytest.raises(ValueError, match="lengths"):
        valid_mask(part)
    # the transforms' form: the same mask on a padded batch, None when nothing is padded
    assert torch.equal(valid_mask_or_none(spec), valid_mask(spec))
    assert valid_mask_or_none(AudioSpectrogram(torch.zeros(3, 1, 5, 7))) is None
    with pytest.raises(ValueError, match="lengths"):
        valid_mask_or_none(part)


def test_waveform_standardization_independent_of_padding(clips):
    """Each clip of a padded batch equals the clip standardized alone in NumPy float64 (from the
    float32 samples the batch holds), to a bound on float32 rounding. A float32 sum is off by at most
    K u sum|x| (u = 2**-24) when each value meets at most K roundings on its way to the total; torch's
    CPU sum (SumKernel's cascade: 4 levels, each adding at most 16 partial sums in sequence for clips
    below ~16M samples, after the vector-lane and tail folds) gives K = 4 * 16 + 16 = 80. The mean's
    error shows in every value as K u mean|x| / std (atol); the std's (sum of squares, division,
    sqrt), the subtraction's and the division's scale with the value: (K + 4) u |z| (rtol). Measured
    errors are 1 ulp, about 2% of that bound; a std with ddof=1 (1/(2n) relative: 20x the tolerance or more) or
    any counted padding fails."""
    batch = WaveformNormalize()(_padded_batch(clips))
    u, k = 2.0**-24, 80
    for i, c in enumerate(clips):
        held = c.astype(np.float32).astype(np.float64)  # the samples the batch holds
        alone = (held - held.mean()) / held.std()
        atol = k * u * np.abs(held).mean() / held.std()
        np.testing.assert_allclose(batch[i, 0, : len(c)].numpy(), alone, rtol=(k + 4) * u, atol=atol)
        assert (batch[i, 0, len(c) :] == 0).all()  # padding becomes silence
    assert torch.equal(batch.lengths, torch.tensor([len(c) for c in clips]))


def test_padded_frames_equal_each_clip_alone(clips):
    """Every valid frame of a padded batch (the last ones included) equals torchaudio's spectrogram
    of the clip alone: the reflection torch.stft pads a lone clip with is rebuilt at each clip's end."""
    wav = WaveformNormalize()(_padded_batch(clips))
    spec = AudioToSpec(**SPEC)(wav)
    assert torch.equal(spec.lengths, torch.tensor([len(c) // HOP + 1 for c in clips]))
    for i, c in enumerate(clips):
        alone = _alone_db(wav[i, :, : len(c)].as_subclass(torch.Tensor))  # the same samples, alone
        n = int(spec.lengths[i])
        assert alone.shape[-1] == n
        # float32 FFTs of the same samples in another batch layout: ~1e-6 relative power, ~1e-5 dB
        torch.testing.assert_close(spec[i, :, :, :n].as_subclass(torch.Tensor), alone, rtol=0, atol=1e-4)
        assert (spec[i, :, :, n:] == -100).all()  # padded frames: the silence floor


@pytest.mark.parametrize("norm", [SpecNormalize(torch.tensor(-30.0), torch.tensor(20.0)), InstanceMinMax(), DbRangeNormalize()])
def test_normalizations_set_padding_to_zero_and_use_valid_frames(clips, norm):
    spec = AudioToSpec(**SPEC)(WaveformNormalize()(_padded_batch(clips)))
    out = norm(spec.clone())
    for i in range(len(clips)):
        n = int(spec.lengths[i])
        assert (out[i, :, :, n:] == 0).all()
        alone = spec[i : i + 1, :, :, :n].clone()
        alone.lengths = None
        torch.testing.assert_close(
            out[i : i + 1, :, :, :n].as_subclass(torch.Tensor), norm(alone).as_subclass(torch.Tensor), rtol=1e-5, atol=1e-5
        )


def test_instance_minmax_mask_matches_numpy():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2, 1, 3, 6)).astype(np.float32))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2]).reshape(2, 1, 1, 6)
    out = SF.instance_minmax(x, mask=mask)
    v = x[1, :, :, :4].numpy().astype(np.float64)
    np.testing.assert_allclose(out[1, :, :, :4].numpy(), (v - v.min()) / (v.max() - v.min()), atol=1e-6)
    assert (out[1, :, :, 4:] == 0).all()


def test_plain_tensor_refused_labels_pass():
    with pytest.raises(TypeError, match=r"AudioTensor\(x, sr="):
        AudioToSpec()(torch.randn(1, 4000))
    with pytest.raises(TypeError, match="AudioSpectrogram"):
        InstanceMinMax()(torch.randn(2, 1, 4, 5))
    y = TensorCategory([1, 0])
    assert AudioToSpec()(y) is y and WaveformNormalize()(y) is y


def test_db_range_reference_levels():
    db = torch.tensor([-100.0, -80.0, 0.0, 20.0])
    torch.testing.assert_close(SF.db_range(db), torch.tensor([0.0, 0.2, 1.0, 1.0]))  # ref 0: -100..0 dB
    out = DbRangeNormalize()(AudioSpectrogram(db.reshape(1, 1, 1, 4)))
    torch.testing.assert_close(out.flatten().as_subclass(torch.Tensor), torch.tensor([0.0, 0.0, 0.8, 1.0]))  # -80..+20 dB
    assert "ref_level_db': 20.0" in repr(DbRangeNormalize())


def test_freq_batchnorm_masked_equals_batchnorm_on_valid_frames():
    torch.manual_seed(0)
    x = AudioSpectrogram(torch.randn(3, 1, 4, 10) * 5 + 2)
    x.lengths = torch.tensor([10, 6, 3])
    layer = FreqBatchNorm(4).train()
    out = layer(x)
    # reference: the valid frames of all items, per bin, population mean/var (BatchNorm's training rule)
    valid = np.concatenate([x[i, 0, :, : int(n)].numpy() for i, n in enumerate(x.lengths)], axis=1).astype(np.float64)
    mean, std = valid.mean(1, keepdims=True), np.sqrt(valid.var(1, keepdims=True) + 1e-5)
    for i, n in enumerate(x.lengths.tolist()):
        np.testing.assert_allclose(out[i, 0, :, :n].detach().numpy(), (x[i, 0, :, :n].numpy() - mean) / std, atol=1e-5)
        assert (out[i, :, :, n:] == 0).all()
    plain = torch.randn(2, 1, 4, 5)
    bn = torch.nn.BatchNorm2d(4).train()
    torch.testing.assert_close(FreqBatchNorm(4).train()(plain), bn(plain.transpose(1, 2)).transpose(1, 2))


# ---------------------------------------------------------------------------------------------
# Loaders over generated folders: mixed rates, formats, channel counts and lengths


@pytest.fixture
def folder(tmp_path):
    "2 classes x 6 clips, 0.15-0.9 s, at 8/16/22.05 kHz, WAV (16-bit, float) and FLAC, mono and stereo."
    rng = np.random.default_rng(0)
    root = tmp_path / "clips"
    for label, f0 in (("low", 300.0), ("high", 2500.0)):
        (root / label).mkdir(parents=True)
        for k in range(6):
            sr = (8000, 16000, 22050)[k % 3]
            n = int(sr * (0.15 + 0.15 * k))
            t = np.arange(n) / sr
            x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(n)
            if k % 2:
                x = np.stack([x, 0.5 * x], axis=1)
            ext, subtype = [("wav", "PCM_16"), ("flac", "PCM_16"), ("wav", "FLOAT")][k % 3]
            sf.write(root / label / f"{label}{k}.{ext}", x, sr, subtype=subtype)
    return root


def _reference_frames(dls) -> np.ndarray:
    """The training clips' spectrograms computed one at a time: (freq, all frames) float64.

    Each clip alone is standardized with the masked formula WaveformNormalize applies to padded
    batches (mask all True): the unmasked formula rounds differently by 1 ulp, and in the nearly
    empty band of the 8 kHz clips upsampled to 16 kHz (frames near -90 dB) 1 ulp of waveform moves a
    frame by up to ~1 dB and a bin's mean by ~1e-3 dB. That the standardization itself ignores the
    padding is test_waveform_standardization_independent_of_padding's subject."""
    frames = []
    for row in dls.train.items.itertuples():
        wav = AudioTensor.create(dls.path / row.file, sr=16000).as_subclass(torch.Tensor)
        standardized = SF.standardize_waveform(wav, mask=torch.ones_like(wav, dtype=torch.bool))
        frames.append(_alone_db(standardized)[0].numpy().astype(np.float64))
    return np.concatenate(frames, axis=1)


def test_padded_statistics_equal_clips_one_at_a_time(folder):
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, cache=False)
    xb, _ = dls.train.one_batch()
    assert xb.lengths is not None  # the batches really are padded
    ref = _reference_frames(dls)
    glob = collect_stats(stats_loader(dls.train), red_dims=(0, 2, 3), progress=False)
    per_bin = collect_stats(stats_loader(dls.train), red_dims=(0, 1, 3), progress=False)
    assert int(glob.count.item()) == ref.size
    # The same float32 frames up to FFT rounding (see test_padded_frames_equal_each_clip_alone),
    # summed in float64; counting the padding would move the mean by dB (below).
    tol = {"rtol": 0, "atol": 1e-4}
    np.testing.assert_allclose(glob.mean.item(), ref.mean(), **tol)
    np.testing.assert_allclose(glob.std.item(), ref.std(), **tol)
    np.testing.assert_allclose(per_bin.mean.flatten().numpy(), ref.mean(1), **tol)
    np.testing.assert_allclose(per_bin.std.flatten().numpy(), ref.std(1), **tol)
    # counting the padding would have moved the mean by dB, not by 1e-4
    with_padding = collect_stats(
        stats_loader(dls.train), red_dims=(0, 2, 3), progress=False, mask_fn=lambda x: torch.ones_like(x, dtype=torch.bool)
    )
    assert abs(with_padding.mean.item() - ref.mean()) > 1.0


def test_duration_crops_and_pads(folder):
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, duration=0.5)
    xb, _ = dls.train.one_batch()
    assert xb.shape[-1] == 8000 // HOP + 1 and xb.lengths is None


def test_sample_rate_none(folder, tmp_path):
    with pytest.raises(ValueError, match=r"8000 Hz \(4 files\), 16000 Hz \(4 files\), 22050 Hz \(4 files\)"):
        AudioDataLoaders.from_folder(folder, sample_rate=None, bs=2)
    one = tmp_path / "one_rate"
    for label in ("a", "b"):
        for k in range(3):
            (one / label).mkdir(parents=True, exist_ok=True)
            sf.write(one / label / f"{k}.wav", np.random.default_rng(k).uniform(-0.5, 0.5, 800 + 300 * k), 8000)
    dls = AudioDataLoaders.from_folder(one, sample_rate=None, bs=2, valid_pct=0.3, seed=0, spec=SPEC)
    assert dls.sample_rate == 8000 and dls.one_batch()[0].sr == 8000


def test_bad_files_named_before_training(folder):
    (folder / "low" / "empty.wav").write_bytes(b"")
    (folder / "low" / "notes.wav").write_text("not audio")
    data = (folder / "high" / "high0.wav").read_bytes()
    (folder / "high" / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFilesError) as info:
        AudioDataLoaders.from_folder(folder, bs=2)
    msg = str(info.value)
    for name, why in (("empty.wav", "empty"), ("notes.wav", "not a readable audio file"), ("cut.wav", "truncated")):
        assert name in msg and why in msg
    assert len(info.value.problems) == 3


def test_m4a_files_are_named_as_a_format_soundfile_cannot_read(tmp_path, write_audio):
    "AAC in MP4 (.m4a), as phones record it: named with the way out wherever it is met, not 'not audio' or 'no layout'."
    from fastspecnorm.datasets.sources import detect_dataset

    for label in ("dog", "cat"):
        (tmp_path / "phone" / label).mkdir(parents=True)
        (tmp_path / "phone" / label / "take1.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(ValueError, match=r"no known layout .*2 \.m4a file\(s\): \.m4a \(AAC or ALAC in MP4\) is not a format "
                       "soundfile reads: convert it first, e.g. ffmpeg -i take1.m4a take1.flac"):  # fmt: skip
        detect_dataset(tmp_path / "phone")
    with pytest.raises(FileNotFoundError, match=r"no audio files .* it holds 2 \.m4a file\(s\)"):
        AudioDataLoaders.from_folder(tmp_path / "phone", bs=2)
    write_audio("mixed/dog/ok.wav", np.zeros(1600, dtype="float32"))
    (tmp_path / "mixed" / "dog" / "take1.m4a").write_bytes(bytes(300))
    with pytest.raises(AudioFilesError, match=r"take1\.m4a: not a readable audio file: \.m4a \(AAC or ALAC in MP4\) is not"):
        check_audio_files([tmp_path / "mixed" / "dog" / "ok.wav", tmp_path / "mixed" / "dog" / "take1.m4a"])


def test_implausible_sample_rates_named_with_their_rate(tmp_path):
    "check_audio_files refuses by file and rate what load_audio would refuse mid-epoch."
    for sr in (999, 1000, 384_000, 384_001):
        sf.write(tmp_path / f"r{sr}.wav", np.full(50, 0.25), sr, subtype="PCM_16")
    with pytest.raises(AudioFilesError) as info:
        check_audio_files(sorted(tmp_path.glob("*.wav")))
    assert sorted(info.value.problems) == [str(tmp_path / "r384001.wav"), str(tmp_path / "r999.wav")]
    for sr in (999, 384_001):
        assert f"r{sr}.wav: the header claims a sample rate of {sr} Hz" in str(info.value)
    facts = check_audio_files([tmp_path / "r1000.wav", tmp_path / "r384000.wav"])
    assert [f["samplerate"] for f in facts.values()] == [1000, 384_000]


def test_from_df_group_split(folder):
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*"))
    df = pd.DataFrame(
        {"file": files, "label": [f.split("/")[0] for f in files], "speaker": [f"s{i % 3}" for i in range(len(files))]}
    )
    dls = AudioDataLoaders.from_df(df, path=folder, fold_col="speaker", valid_fold="s1", bs=2, spec=SPEC)
    assert set(dls.valid.items["speaker"]) == {"s1"} and "s1" not in set(dls.train.items["speaker"])
    df["is_valid"] = df["speaker"] == "s2"
    dls = AudioDataLoaders.from_df(df, path=folder, fn_col="file", label_col="label", valid_col="is_valid", bs=2, spec=SPEC)
    assert set(dls.valid.items["speaker"]) == {"s2"}
    with pytest.raises(ValueError, match=r"valid_fold='s9' is not a value of column 'speaker'"):
        AudioDataLoaders.from_df(df, path=folder, fold_col="speaker", valid_fold="s9", bs=2)


def test_predict_any_input_and_export_round_trip(folder, tmp_path):
    from fastai.learner import load_learner

    # cache=False: a file and the same audio in memory then take the same (float32) path
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, duration=0.3, cache=False)
    learn = audio_learner(dls, cbs=StatsCallback(red_dims=(0, 1, 3)), input_bn=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit(1)
    # a file longer than the training duration, at another rate, in stereo: used whole, never cropped
    long = tmp_path / "long.wav"
    sr, n = 44100, 44100 * 2
    sf.write(long, np.stack([np.sin(np.arange(n) * 0.06), np.cos(np.arange(n) * 0.06)], 1) * 0.3, sr)
    xb = dls.test_dl([long]).one_batch()[0]
    assert xb.shape[-1] == 32000 // HOP + 1  # the whole 2 s at 16 kHz, not 0.3 s
    label, idx, probs = learn.predict(long)
    assert label in dls.vocab and probs.shape == (2,)
    wav, file_sr = sf.read(long, dtype="float32")
    _, _, probs_tensor = learn.predict(AudioTensor(torch.from_numpy(wav.T.copy()), sr=file_sr))
    torch.testing.assert_close(probs_tensor, probs, atol=1e-4, rtol=0)  # the same audio, decoded vs in memory
    _, _, probs_np = learn.predict(np.random.default_rng(0).uniform(-0.3, 0.3, 5000).astype(np.float32))
    assert probs_np.shape == (2,)
    learn.export(tmp_path / "export.pkl")
    loaded = load_learner(tmp_path / "export.pkl")
    _, _, probs_loaded = loaded.predict(long)
    torch.testing.assert_close(probs_loaded, probs, atol=1e-6, rtol=0)
    norms = [t for t in loaded.dls.valid.after_batch.fs if isinstance(t, SpecNormalize)]
    assert len(norms) == 1 and norms[0].mean.shape == (1, 1, N_FFT // 2 + 1, 1)


def test_predict_refuses_a_clip_longer_than_max_duration_before_decoding_it(folder, tmp_path, monkeypatch):
    "An hour of audio took 3.2 GB in one forward pass: predict refuses clips over the learner's max_duration, by their length."
    from fastai.learner import load_learner

    import fastspecnorm.audio.tensors as tensors
    from fastspecnorm import AudioLearner

    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, cache=False)
    learn = audio_learner(dls)
    assert isinstance(learn, AudioLearner) and learn.max_duration == 600.0  # the loaders' own bound on clips
    long = tmp_path / "ten_minutes_and_a_second.wav"
    sf.write(long, np.zeros(601 * 1000, dtype=np.int16), 1000)  # 601 s in its header, 1.2 MB on disk
    with monkeypatch.context() as patch:  # refused from the header: no sample is decoded
        patch.setattr(tensors, "load_audio_with_subtype", lambda *a: pytest.fail("the long clip was decoded"))
        with pytest.raises(ValueError, match=r"ten_minutes_and_a_second\.wav lasts 601\.0 s, longer than this learner's "
                           r"max_duration=600 s.*learn\.max_duration = None"):  # fmt: skip
            learn.predict(long)

    learn = audio_learner(dls, max_duration=0.5)
    rate = dls.sample_rate  # NumPy arrays are taken at the loaders' rate
    for item, seconds in [
        (np.zeros(rate, dtype=np.float32), 1.0),  # (samples,)
        (np.zeros((2, rate // 10 * 6), dtype=np.float32), 0.6),  # (channels, samples)
        (np.zeros((rate // 10 * 6, 2), dtype=np.float32), 0.6),  # (samples, channels)
        (AudioTensor(torch.zeros(1, 4400), sr=8000), 0.55),  # at its own rate, not the loaders'
    ]:
        with pytest.raises(ValueError, match=rf"the clip lasts {seconds:.1f} s, longer than this learner's max_duration=0\.5 s"):
            learn.predict(item)
    label, _, probs = learn.predict(np.zeros(rate // 2, dtype=np.float32))  # exactly the limit: predicted
    assert label in dls.vocab and probs.shape == (2,)

    learn.export(tmp_path / "export.pkl")
    loaded = load_learner(tmp_path / "export.pkl")
    assert isinstance(loaded, AudioLearner) and loaded.max_duration == 0.5  # the bound travels with the learner
    with pytest.raises(ValueError, match="longer than this learner's max_duration"):
        loaded.predict(np.zeros(rate, dtype=np.float32))
    loaded.max_duration = None  # no bound: the whole clip is predicted
    assert loaded.predict(np.zeros(rate, dtype=np.float32))[2].shape == (2,)
    for bad in (0, -1.0, float("nan"), True, "600"):
        with pytest.raises(ValueError, match="max_duration must be positive seconds or None"):
            audio_learner(dls, max_duration=bad)


def test_show_and_top_losses(folder):
    import matplotlib.pyplot as plt
    from fastai.interpret import ClassificationInterpretation

    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC)
    learn = audio_learner(dls)
    dls.show_batch(max_n=3)
    learn.show_results(max_n=3)
    ClassificationInterpretation.from_learner(learn).plot_top_losses(2)
    assert plt.gcf().axes
    plt.close("all")
    player = AudioTensor(torch.zeros(1, 800), sr=8000).play()
    assert "audio" in player._repr_html_()


def test_lengths_survive_worker_processes(folder):
    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=3, spec=SPEC, cache=False, num_workers=1)
    lengths = [xb.lengths for xb, _ in dls.valid]
    assert all(n is None or (n.dtype == torch.long and n.shape == (3,)) for n in lengths) and any(n is not None for n in lengths)


def test_show_batch_draws_each_clip_without_its_padding(folder):
    "Each panel spans its own clip's frames (the batch's `lengths`), not the longest clip's padding."
    import matplotlib.pyplot as plt

    dls = AudioDataLoaders.from_folder(folder, valid_pct=0.5, seed=0, bs=4, spec=SPEC)
    xb, _ = b = dls.valid.one_batch()
    frames = xb.lengths.tolist()
    assert len(set(frames)) > 1  # clips of different lengths, so some are padded
    dls.valid.show_batch(b, max_n=4)
    axes = [ax for ax in plt.gcf().axes if ax.images]
    ends = [ax.images[0].get_extent()[1] for ax in axes]
    np.testing.assert_allclose(ends, [n * HOP / xb.sr for n in frames])  # seconds: frames x hop / rate
    for ax, n in zip(axes, frames, strict=True):
        assert ax.images[0].get_array().shape[-1] == n
    plt.close("all")
