"""The classifier and `tl-device classify`: self-describing models, derived input specs, bad models refused."""

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.scenes import SCENE_LABELS, make_scene
from tl.device.cli.tl_device import main
from tl.device.errors import ModelError
from tl.device.model import contract
from tl.device.model.classifier import Classifier, top_k


def test_labels_and_spec_come_from_the_file(tiny_models):
    classifier = Classifier(tiny_models["tiny_int8"], threads=1)
    assert classifier.labels == SCENE_LABELS
    assert (classifier.spec.height, classifier.spec.width, classifier.spec.pixel_range) == (32, 32, "0..255")
    assert classifier.info.variant == "int8"
    assert classifier.interpreter.get_input_details()[0]["dtype"] == np.int8


def test_int8_agrees_with_float_on_scenes(tiny_models):
    rng = np.random.default_rng(3)
    int8, flt = Classifier(tiny_models["tiny_int8"]), Classifier(tiny_models["tiny_float"])
    frames = [make_scene(kind, rng) for kind in SCENE_LABELS for _ in range(4)]
    a = np.stack([int8.classify_frame(f) for f in frames])
    b = np.stack([flt.classify_frame(f) for f in frames])
    assert (a.argmax(1) == b.argmax(1)).all()
    assert np.abs(a - b).max() < 0.1
    assert int8.invoke_ms > 0


def test_roi_crops_before_the_model(tiny_models):
    classifier = Classifier(tiny_models["tiny_float"])
    frame = make_scene("background", np.random.default_rng(0))
    dog = make_scene("dog", np.random.default_rng(0))
    frame[:, 320:] = dog[:, 320:]  # a dog only in the right half... cropped to the left half:
    assert SCENE_LABELS[int(classifier.classify_frame(frame, roi=(0, 0, 320, 480)).argmax())] == "background"


def test_model_without_labels_is_refused_then_usable_with_a_labels_file(tiny_models, tmp_path):
    with pytest.raises(ModelError, match="carries no labels.*--labels"):
        Classifier(tiny_models["plain_float"])
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(SCENE_LABELS) + "\n")
    classifier = Classifier(tiny_models["plain_float"], labels_path=labels)
    # No input spec in the file: derived from the tensor (float input: raw pixels).
    assert (classifier.spec.height, classifier.spec.width, classifier.spec.pixel_range) == (32, 32, "0..255")
    assert classifier.info.variant == "unknown"


def test_labels_that_do_not_fit_the_outputs_are_refused(tiny_models, tmp_path):
    labels = tmp_path / "two.txt"
    labels.write_text("dog\ncat\n")
    with pytest.raises(ModelError, match="3 outputs but 2 labels"):
        Classifier(tiny_models["tiny_float"], labels_path=labels)


@pytest.mark.parametrize("name, message", [
    ("missing", "cannot read"),
    ("truncated", "cannot load it"),
    ("not_tflite", "not a TFLite model"),
    ("gray_input", r"input shape \(1, 8, 8, 1\) is not supported"),
])
def test_bad_models_are_refused_with_path_and_exit_code_2(tiny_models, tmp_path, name, message):
    path = tiny_models.get(name, tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match=message):
        Classifier(path)
    image = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    result = CliRunner().invoke(main, ["classify", str(path), str(image)])
    assert result.exit_code == 2
    assert str(path) in result.output


def test_pixel_range_guessed_from_input_quantization():
    uint8_google = {"dtype": np.uint8, "quantization": (1 / 128, 128), "shape": [1, 224, 224, 3]}
    int8_raw = {"dtype": np.int8, "quantization": (1.0, -128), "shape": [1, 96, 128, 3]}
    unit = {"dtype": np.uint8, "quantization": (1 / 255, 0), "shape": [1, 8, 8, 3]}
    assert contract.guess_pixel_range(uint8_google) == "-1..1"
    assert contract.guess_pixel_range(int8_raw) == "0..255"
    assert contract.guess_pixel_range(unit) == "0..1"
    assert contract.guess_pixel_range({"dtype": np.float32, "quantization": (0.0, 0)}) == "0..255"
    spec = contract.input_spec_from_tensor(int8_raw)
    assert (spec.height, spec.width, spec.resize) == (96, 128, "squash")
    with pytest.raises(ModelError, match="not supported"):
        contract.input_spec_from_tensor({"dtype": np.float32, "quantization": (0.0, 0), "shape": [1, 8, 8]})


def test_scaled_pixels_quantize_back_to_the_raw_pixels_for_google_models():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert contract.scale_pixels(pixels, "0..255") is pixels
    scaled = contract.scale_pixels(pixels, "-1..1")
    assert scaled.min() == pytest.approx(-1) and scaled.max() == pytest.approx(1)
    q = contract.quantize_input(scaled, {"dtype": np.uint8, "quantization": (1 / 128, 128)})
    assert np.abs(q[0].astype(int) - pixels).max() <= 1  # what pycoral feeds such models: the raw pixels
    with pytest.raises(ModelError, match="unknown"):
        contract.scale_pixels(pixels, "0..42")


def test_top_k():
    best = top_k(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], k=2)
    assert [(c.label, c.id) for c in best] == [("b", 1), ("c", 2)]
    assert best[0].score == pytest.approx(0.7)


def test_classify_command_prints_top_classes_and_invoke_time(tiny_models, tmp_path):
    import cv2

    rng = np.random.default_rng(5)
    images = []
    for kind in ("dog", "raccoon"):
        images.append(tmp_path / f"{kind}.jpg")
        cv2.imwrite(str(images[-1]), make_scene(kind, rng))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    result = CliRunner().invoke(main, ["classify", str(tiny_models["tiny_int8"]), *map(str, images), "--top-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(str(images[0])) and lines[0].endswith(" ms)")
    assert lines[1].split()[1] == "dog" and lines[4].split()[1] == "raccoon"
    assert len(lines) == 6
    result = CliRunner().invoke(main, ["classify", str(tiny_models["tiny_int8"]), str(tmp_path / "broken.jpg"),
                                       str(images[0])])
    assert result.exit_code == 2
    assert "broken.jpg" in result.output and "dog" in result.output


def test_info_that_contradicts_the_tensor_is_refused(tiny_models, tmp_path):
    from tl.device.model.contract import InputSpec
    from tl.device.model.metadata import ModelInfo, embed_model_info

    wrong = tmp_path / "wrong_size.tflite"
    info = ModelInfo(labels=list(SCENE_LABELS), input=InputSpec(16, 16))
    wrong.write_bytes(embed_model_info(tiny_models["tiny_float"].read_bytes(), info))
    with pytest.raises(ModelError, match="input tensor is 32x32 but its info says 16x16"):
        Classifier(wrong)


def test_make_interpreter_takes_bytes_as_it_takes_a_path(tiny_models):
    from tl.device.model.metadata import strip_model_info
    from tl.device.model.outputs import find_outputs, read_output
    from tl.device.model.runtime import make_interpreter, uses_edgetpu

    path = tiny_models["tiny_int8"]
    pixels = contract.prepare_frame(make_scene("dog", np.random.default_rng(4)), Classifier(path).spec)
    scores = []
    for model in (path, path.read_bytes(), strip_model_info(path.read_bytes())):
        interpreter = make_interpreter(model, threads=1)
        contract.set_input(interpreter, pixels)
        interpreter.invoke()
        scores.append(read_output(interpreter, find_outputs(interpreter.get_output_details(), None, 3, path).scores))
    assert np.array_equal(scores[0], scores[1]) and np.array_equal(scores[0], scores[2])
    with pytest.raises(ModelError, match=r"model \(12 bytes in memory\) is not a TFLite model"):
        make_interpreter(b"not a model!")
    assert not uses_edgetpu(b"x_edgetpu.tflite") and uses_edgetpu("m_edgetpu.tflite") and uses_edgetpu(b"", True)
