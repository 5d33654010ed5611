"""Tests for fastspecnorm.experiment.train: one run (`train_one`) with the settings of its normalization."""

import pytest

from fastspecnorm.experiment import runner as experiment
from fastspecnorm.experiment import train as train_module

TINY = {"duration": 1.0, "bs": 4, "num_workers": 0}


@pytest.mark.parametrize("norm, standardized", [("none", False), ("dbrange", False), ("global", True), ("instance", True)])
def test_waveform_standardization_per_norm(esc, monkeypatch, norm, standardized):
    seen = {}

    class Stop(Exception):
        pass

    def capture(source, valid_fold, settings, **kwargs):
        seen["waveform_norm"] = settings.waveform_norm
        raise Stop

    monkeypatch.setattr(train_module, "source_dataloaders", capture)
    with pytest.raises(Stop):
        experiment.train_one(esc, norm, 1, 0, "quick", epochs=1, **TINY)
    assert seen["waveform_norm"] is standardized
