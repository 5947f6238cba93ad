"""Operating points and calibration facts in a model file's info, read back on the device (no TensorFlow)."""

import pytest

from tl.device.errors import ModelError
from tl.device.model.contract import InputSpec
from tl.device.model.metadata import (
    ModelInfo,
    embed_model_info,
    read_model_info,
    read_operating_points,
    strip_model_info,
)


@pytest.fixture
def write_model(tiny_models):
    """Writes a real (tiny, float) model carrying the given labels, operating points and calibration."""
    bare = strip_model_info(tiny_models["tiny_float"].read_bytes())

    def write(path, labels, points=None, calibration=None):
        info = ModelInfo(labels, InputSpec(32, 32), operating_points=points or {}, calibration=calibration or {})
        path.write_bytes(embed_model_info(bare, info))
        return path

    return write


def test_operating_points_round_trip_in_label_order(tmp_path, write_model):
    path = write_model(tmp_path / "m.tflite", ["cat", "dog", "other"], {"dog": 0.71, "other": 0.5, "cat": 0.62},
                       {"temperature": 0.5, "target": 0.01})
    assert list(read_operating_points(path).items()) == [("cat", 0.62), ("dog", 0.71), ("other", 0.5)]
    assert read_model_info(path).calibration == {"temperature": 0.5, "target": 0.01}


def test_a_model_without_operating_points_reads_as_empty(tmp_path, write_model):
    path = write_model(tmp_path / "m.tflite", ["cat", "dog"])
    assert read_operating_points(path) == {}
    assert read_model_info(path).calibration == {}


def test_operating_points_for_a_class_the_model_lacks_are_refused(tmp_path, write_model):
    path = write_model(tmp_path / "m.tflite", ["cat", "dog"], {"fox": 0.9})
    with pytest.raises(ModelError, match="fox"):
        read_operating_points(path)
