"""Tests for fastspecnorm.experiment.cli, the `fastspecnorm compare` command: its options (built from the
dataclasses' fields), arguments refused before OUT is touched, error lines, exit statuses, logs that read
well in a file, the command without torch, and the command end to end in a subprocess.
"""

import pytest

from fastspecnorm.experiment.runner import parse_args
from fastspecnorm.presets import TRAINING, get_preset


def test_augment_on_the_command_line_and_preset_strong(tmp_path, capsys):
    def augment(*extra):
        cfg = parse_args(["--data", "synthetic", "--out", str(tmp_path), *extra])
        return get_preset("blog", **cfg.overrides)[1].augment

    assert augment() is False
    assert augment("--augment") is True  # SpecAugment + mixup, as before kinds existed
    assert augment("--augment", "spec") is True  # the same experiment: the same settings
    assert augment("--augment", "waveform") == "waveform" and augment("--augment", "all") == "all"
    assert augment("--set", "augment=waveform") == "waveform"
    with pytest.raises(SystemExit):
        augment("--augment", "sometimes")
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        augment("--set", "augment=sometimes")
    assert "setting augment='sometimes' is out of range: expected one of [False, True, 'spec', 'waveform', 'all']" in (
        capsys.readouterr().err
    )
    # strong = blog + augmentations, nothing else changed
    assert get_preset("strong") == get_preset("blog", augment=True) and TRAINING["blog"].augment is False
