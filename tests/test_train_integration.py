"""One real training: ImageNet MobileNetV2 on a slice of the shared dog/cat/other photos."""

import json

import pytest
from click.testing import CliRunner

from tests.conftest import slice_folder
from tl.train.cli import main

pytestmark = pytest.mark.integration


def test_real_training_on_a_petsslice_folder(shared_pets, imagenet_weights, tmp_path):
    train = slice_folder(shared_pets / "train", tmp_path / "train", 40)
    val = slice_folder(shared_pets / "val", tmp_path / "val", 15)
    out = tmp_path / "run"
    # The default weights path: "imagenet" from the Keras cache the fixture seeded.
    result = CliRunner().invoke(main, [str(train), "--out", str(out), "--val-dir", str(val), "--image-size", "160",
                                       "--cache-dir", str(tmp_path / "cache")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rec = json.loads((out / "train.json").read_text())
    assert rec["labels"] == ["cat", "dog", "other"]
    assert rec["data"]["val_counts"] == {"cat": 15, "dog": 15, "other": 15}
    # Chance is 1/3; ImageNet features separate these classes easily.
    assert rec["metrics"]["val"]["accuracy"] >= 0.75
    # Calibrated on the held-out images, with an operating point per class and the ImageNet dog prior.
    assert rec["calibration"]["nll_after"] <= rec["calibration"]["nll_before"] + 1e-6
    ops = rec["operating_points"]
    assert set(ops["thresholds"]) == {"cat", "dog", "other"} and ops["target"] == 0.01
    assert ops["per_class"]["dog"]["false_share"] <= 0.01 + 1e-9
    assert rec["imagenet_prior"]["scale"] > 0
    assert rec["openset"]["radius_views"] == ["orig", "ir", "small"]
