"""Standard TFLite metadata: written by tl-convert, read by tl-device, by MediaPipe, and from Google's Coral models."""

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tl.device.errors import ConfigError, ModelError
from tl.device.model import tflite_metadata as std
from tl.device.model import tflite_model
from tl.device.model.classifier import Classifier
from tl.device.model.contract import InputSpec, prepare_image
from tl.device.model.image import load_image
from tl.device.model.metadata import INFO_NAME, LABELS_NAME, read_model_info, strip_model_info
from tl.device.model.runtime import make_interpreter

ROOT = Path(__file__).resolve().parents[1]
CORAL = ROOT.parent / "shared" / "data" / "coral"
CORAL_MODEL = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
MEDIAPIPE_CHECK = Path(__file__).parent / "support" / "mediapipe_check.py"


def _record():
    return std.StandardMetadata(
        name="n", description="d", version="v", author="a", license="Apache-2.0",
        inputs=[std.TensorInfo("image", "in", "image", mean=[127.5], std=[127.5], min=[0.0], max=[255.0])],
        outputs=[std.TensorInfo("scores", "out", "feature", min=[0.0], max=[1.0],
                                files=[std.AssociatedFile("labels.txt", "l", std.TENSOR_AXIS_LABELS)])],
        files=[std.AssociatedFile("tl_edge.json", "facts")])


def test_record_round_trips_every_field_it_writes():
    data = std.to_bytes(_record())
    assert data[4:8] == b"M001"
    assert std.from_bytes(data) == _record()
    with pytest.raises(ModelError, match="M001"):
        std.from_bytes(b"\x00" * 16)


def test_adding_metadata_keeps_the_model_computing_the_same(tiny_models, tmp_path):
    raw = strip_model_info(tiny_models["tiny_float"].read_bytes())
    again = std.attach(raw, _record())
    assert std.read_standard_metadata(again) == _record()
    assert len(again) % 16 == 0 and len(again) - len(raw) < 2048
    # Replacing, not piling up: one TFLITE_METADATA entry, the other entries kept.
    twice = std.attach(again, std.StandardMetadata(name="second"))
    names = tflite_model.metadata_names(twice)
    assert list(names).count(std.METADATA_NAME) == 1 and set(tflite_model.metadata_names(raw)) <= set(names)
    assert std.read_standard_metadata(twice).name == "second"
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(*(_run(data, x, tmp_path / f"{i}.tflite") for i, data in enumerate((raw, twice))))


def _run(model_bytes, pixels, path):
    from tl.device.model.contract import set_input

    path.write_bytes(model_bytes)
    interpreter = make_interpreter(path)
    set_input(interpreter, pixels)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def test_device_model_carries_standard_metadata_and_tl_edge_files(openset_run):
    path = openset_run["model"]
    info = read_model_info(path)
    record = info.metadata
    assert record is not None and "door model (int8)" in record.name and record.version.startswith("sha256:")
    assert record.author.startswith("tl-edge") and "classifier_int8.tflite" in record.description
    image, = record.inputs
    assert image.content == "image" and image.mean == []  # uint8 input: pixels as they are
    scores, embedding = record.outputs
    assert (scores.name, scores.labels_file()) == ("scores", LABELS_NAME)
    assert embedding.name == "embedding" and embedding.labels_file() is None
    archive = _archive_names(path)
    assert {f.name for f in record.all_files()} == archive  # every packed file is named in the record
    assert {LABELS_NAME, INFO_NAME, "openset.npz"} <= archive
    assert info.labels == ["background", "dog", "raccoon"] and info.variant == "int8" and "openset.npz" in info.files


def _archive_names(path):
    with zipfile.ZipFile(path) as zf:
        return set(zf.namelist())


def test_classifier_file_is_the_device_model_minus_the_embedding(openset_run):
    device, portable = openset_run["model"], openset_run["run"] / "classifier_int8.tflite"
    inputs, outputs = tflite_model.io_tensors(strip_model_info(portable.read_bytes()))
    assert [t.name for t in outputs] == ["scores"] and inputs[0].dtype == "uint8"
    info = read_model_info(portable)
    assert [t.name for t in info.metadata.outputs] == ["scores"]
    assert info.metadata.version == read_model_info(device).metadata.version  # same weights
    assert "openset.npz" not in info.files and "openset" not in info.extra
    a, b = Classifier(device), Classifier(portable)
    assert b.outputs.embedding is None and b.labels == a.labels
    for x in _val_pixels(openset_run, 8):
        assert np.array_equal(a.classify_pixels(x), b.classify_pixels(x))  # same ops, same bits


def _val_pixels(run, n):
    spec = read_model_info(run["model"]).input
    files = sorted(Path(run["val"]).rglob("*.png"))
    files = files[:: max(1, len(files) // n)][:n]
    return np.stack([prepare_image(load_image(f), spec) for f in files])


def test_files_without_the_standard_record_still_read(openset_run, tmp_path):
    """A file from before the standard record (tl-edge's ZIP alone) reads as it did."""
    data = openset_run["model"].read_bytes()
    old = tmp_path / "old.tflite"
    old.write_bytes(data.replace(std.METADATA_NAME.encode(), b"XFLITE_METADATA", 1))
    info = read_model_info(old)
    assert info.metadata is None and info.labels == ["background", "dog", "raccoon"] and info.variant == "int8"
    assert Classifier(old).outputs.embedding is not None


def test_float_input_says_its_normalisation(float_run):
    for name in ("model_float32.tflite", "classifier_float32.tflite"):
        image = read_model_info(float_run / name).metadata.inputs[0]
        # tl-edge models take raw pixels (normalisation inside): value = (pixel - 0) / 1.
        assert (image.mean, image.std) == ([0.0], [1.0])


@pytest.fixture(scope="module")
def float_run(openset_run, tmp_path_factory):
    """The open-set run converted to float32 too (no calibration: seconds)."""
    from tl.convert import pipeline
    from tl.convert.source import open_source

    run = tmp_path_factory.mktemp("float") / "run"
    shutil.copytree(openset_run["run"], run, ignore=shutil.ignore_patterns("*.tflite", "convert.json"))
    options = pipeline.Options(variants=("float32",), progress=False)
    pipeline.run(open_source(run), options, echo=lambda s: None)
    return run


def test_metadata_adds_little(openset_run):
    data = openset_run["model"].read_bytes()
    flatbuffer = strip_model_info(data)
    record = tflite_model.read_metadata(flatbuffer, std.METADATA_NAME)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        archive = len(data) - len(flatbuffer) - zf.getinfo("openset.npz").file_size
    assert len(record) < 4096 and archive < 16_000


def test_frigate_folder_loads_the_way_frigate_loads_it(openset_run, tmp_path):
    from tl.convert import portable

    folder = portable.write_frigate(openset_run["run"] / "classifier_int8.tflite", tmp_path / "frigate" / "pets")
    labelmap = (folder / "labelmap.txt").read_text().splitlines()
    assert labelmap == ["background", "dog", "raccoon"]
    # Frigate's custom classification: uint8 RGB at the model size, output 0, res / res.sum().
    interpreter = make_interpreter(folder / "model.tflite")
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and len(interpreter.get_output_details()) == 1
    device = Classifier(openset_run["model"])
    for x in _val_pixels(openset_run, 4):
        interpreter.set_tensor(inp["index"], np.expand_dims(x, 0))
        interpreter.invoke()
        res = interpreter.get_tensor(out["index"])[0].astype(np.float64)
        assert labelmap[int(np.argmax(res / res.sum()))] == device.labels[int(np.argmax(device.classify_pixels(x)))]


def test_frigate_refuses_what_it_could_not_feed():
    from tl.convert import portable

    with pytest.raises(ConfigError, match="image-size 224"):
        portable.check_frigate(InputSpec(160, 160), "uint8")
    with pytest.raises(ConfigError, match="--io uint8"):
        portable.check_frigate(InputSpec(224, 224), "int8")
    portable.check_frigate(InputSpec(224, 224), "uint8")


# MediaPipe: an independent reader of the record, and the runtime the classifier file is for.


def _mediapipe_python():
    """A Python that imports mediapipe: this one, $TL_MEDIAPIPE_PYTHON, or .ci/run's side environment."""
    candidates = [sys.executable, os.environ.get("TL_MEDIAPIPE_PYTHON"), str(ROOT / ".venv-mediapipe" / "bin" / "python")]
    for python in filter(None, candidates):
        if Path(python).exists() and subprocess.run(
                [python, "-c", "from mediapipe.tasks.python import vision"], capture_output=True).returncode == 0:
            return python
    pytest.skip(f"mediapipe is not importable here (Python {sys.version_info.major}.{sys.version_info.minor}); "
                ".ci/run installs mediapipe 0.10.21 into .venv-mediapipe where a Python 3.9-3.12 is available, "
                "or point TL_MEDIAPIPE_PYTHON at a Python that has it")


def _mediapipe(tmp_path, metadata=(), classify=(), pixels=None):
    python = _mediapipe_python()
    request = {"metadata": [str(p) for p in metadata], "classify": [str(p) for p in classify]}
    if pixels is not None:
        np.save(tmp_path / "pixels.npy", pixels)
        request["images"] = str(tmp_path / "pixels.npy")
    (tmp_path / "request.json").write_text(json.dumps(request))
    done = subprocess.run([python, str(MEDIAPIPE_CHECK), str(tmp_path / "request.json")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_mediapipe_reads_the_record_and_every_packed_file(openset_run, tmp_path):
    path = openset_run["model"]
    shown = _mediapipe(tmp_path, metadata=[path])["metadata"][str(path)]
    graph = shown["json"]["subgraph_metadata"][0]
    labels = graph["output_tensor_metadata"][0]["associated_files"][0]
    assert (labels["name"], labels["type"]) == (LABELS_NAME, "TENSOR_AXIS_LABELS")
    assert shown["json"]["name"] == read_model_info(path).metadata.name
    assert set(shown["files"]) == _archive_names(path)


def test_mediapipe_classifies_the_classifier_files_with_their_names(openset_run, float_run, tmp_path):
    files = [openset_run["run"] / "classifier_int8.tflite", float_run / "classifier_float32.tflite"]
    pixels = _val_pixels(openset_run, 6)
    result = _mediapipe(tmp_path, classify=files, pixels=pixels)["classify"]
    for path in files:
        device = Classifier(path)
        heads = result[str(path)]
        assert not isinstance(heads, dict), heads["error"]
        for x, (head,) in zip(pixels, heads):
            scores = dict(head)
            assert set(scores) == set(device.labels)
            mine = device.classify_pixels(x)
            assert np.allclose([scores[name] for name in device.labels], mine, atol=0.01)


# Google's Coral models carry the standard record with imagenet_labels.txt attached.

coral = pytest.mark.skipif(not CORAL_MODEL.is_file(), reason=f"{CORAL_MODEL} is absent")


@pytest.mark.integration
@coral
def test_coral_models_classify_with_their_own_labels():
    classifier = Classifier(CORAL_MODEL)
    assert len(classifier.labels) == 1001 and classifier.labels[0] == "background"
    assert classifier.labels == (CORAL / "imagenet_labels.txt").read_text().splitlines()
    scores = classifier.classify_image(load_image(CORAL / "images" / "parrot.jpg"))
    assert classifier.labels[int(np.argmax(scores))] == "macaw"
    assert classifier.spec.pixel_range == "-1..1"


@pytest.mark.integration
@coral
def test_labels_flag_still_wins(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("\n".join(f"class {i}" for i in range(1001)) + "\n")
    assert Classifier(CORAL_MODEL, labels_path=mine).labels[89] == "class 89"


@pytest.mark.integration
@coral
def test_tl_device_classify_needs_no_labels_for_coral():
    from click.testing import CliRunner

    from tl.device.cli.tl_device import main

    result = CliRunner().invoke(main, ["classify", str(CORAL_MODEL), str(CORAL / "images" / "parrot.jpg")])
    assert result.exit_code == 0, result.output
    assert "macaw" in result.output
