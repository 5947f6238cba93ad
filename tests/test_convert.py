"""tl-convert on a tiny synthetic model: every variant converts, loads, describes itself and agrees with Keras."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_colour_folder
from tl.convert import calibration, check, pipeline
from tl.convert.report import CONVERT_JSON, format_table, write_report
from tl.convert.source import open_source
from tl.convert.variants import VARIANTS, Quantization, file_name
from tl.device.data.dataset import scan_folder
from tl.device.errors import ConfigError, DataError
from tl.device.model.contract import InputSpec, prepare_image
from tl.device.model.image import load_image
from tl.device.model.metadata import read_model_info
from tl.device.model.runtime import make_interpreter

SIZE = 32


def make_tiny_run(run_dir, train_dir, val_dir, size=SIZE):
    """Writes a RUN_DIR as tl-train would: model.keras (0..255 in, softmax out), labels.txt, train.json.

    The backbone is a tiny random CNN with MobileNetV2's ops (conv, BN, ReLU6, depthwise, residual
    add, mean); a random MobileNetV2 collapses every image to the same features, this does not.
    The softmax head is fitted on its pooled features, as tl-train fits its head on embeddings.
    """
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((size, size, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inp)
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)))
    y = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
    y = L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False)(y))
    x = L.ReLU(6.0)(L.Conv2D(16, 1)(L.Add()([x, y])))
    features = keras.Model(inp, L.GlobalAveragePooling2D()(x))
    spec = InputSpec(size, size)
    data = scan_folder(train_dir)
    pixels = np.stack([prepare_image(load_image(s.path), spec) for s in data.samples]).astype(np.float32)
    emb = features.predict(pixels, verbose=0)
    head_in = keras.Input(emb.shape[1:])
    head = keras.Model(head_in, L.Dense(len(data.classes), activation="softmax")(L.Dropout(0.2)(head_in)))
    head.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    head.fit(emb, np.array([s.label for s in data.samples]), epochs=150, batch_size=len(emb), verbose=0)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.Model(inp, head(features(inp))).save(run_dir / "model.keras")
    (run_dir / "labels.txt").write_text("\n".join(data.classes) + "\n")
    record = {
        "labels": data.classes,
        "input": spec.to_dict(),
        "data": {"train_dir": str(train_dir), "val_dir": str(val_dir), "val_files": None},
        "backbone": {"name": "tiny_cnn", "alpha": 1.0, "weights": None, "embedding_dim": int(emb.shape[1])},
        # What tl-train records (tl.train.calibration): the temperature is already in the weights.
        "calibration": {"method": "temperature", "temperature": 1.0},
        "operating_points": {"target": 0.01, "floor": 0.5, "source": "test",
                             "thresholds": {c: 0.5 + 0.1 * i for i, c in enumerate(data.classes)}},
    }
    (run_dir / "train.json").write_text(json.dumps(record))
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, colour_data):
    train, val = colour_data
    return make_tiny_run(tmp_path_factory.mktemp("tiny") / "run", train, val)


@pytest.fixture(scope="module")
def converted(tiny_run):
    """Every variant of the tiny run, converted and checked once for the whole module."""
    source = open_source(tiny_run)
    outcome = pipeline.run(source, pipeline.Options(variants=VARIANTS, progress=False), echo=lambda s: None)
    return source, outcome


def _keras_and_pixels(run_dir, val_dir):
    import keras

    model = keras.saving.load_model(run_dir / "model.keras")
    data = scan_folder(val_dir)
    pixels = np.stack([prepare_image(load_image(s.path), InputSpec(SIZE, SIZE)) for s in data.samples])
    return model.predict(pixels.astype(np.float32), verbose=0), pixels


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_loads_describes_itself_and_agrees_with_keras(converted, colour_data, variant):
    source, _ = converted
    path = source.out_dir / file_name(variant)
    info = read_model_info(path)  # the device-side reader: no TensorFlow involved
    assert info.labels == ["blue", "green", "red"]
    assert info.variant == variant
    assert info.input == InputSpec(SIZE, SIZE)
    assert info.extra["source"]["kind"] == "run"
    keras_scores, pixels = _keras_and_pixels(source.path, colour_data[1])
    interpreter = make_interpreter(path, threads=1)
    lite_scores, _, _ = check.score_model(interpreter, pixels, info.input, progress=False)
    if variant == "int8":
        assert np.mean(lite_scores.argmax(1) == keras_scores.argmax(1)) == 1.0
        assert np.allclose(lite_scores, keras_scores, atol=0.05)  # one uint8 step is 1/256
    else:
        atol = 1e-5 if variant == "float32" else 1e-2
        assert np.allclose(lite_scores, keras_scores, atol=atol)


def test_int8_is_full_integer_with_uint8_io_and_says_how_it_was_calibrated(converted):
    source, outcome = converted
    int8 = outcome.report["variants"]["int8"]
    assert int8["io"] == "uint8"
    assert int8["float_ops"] == []
    interpreter = make_interpreter(source.out_dir / "model_int8.tflite")
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    info = read_model_info(source.out_dir / "model_int8.tflite")
    assert info.extra["io"] == "uint8"
    assert info.extra["calibration"]["samples"] == 36
    assert info.extra["calibration"]["per_class"] == {"blue": 12, "green": 12, "red": 12}


def test_operating_points_travel_from_train_json_into_every_file(converted):
    from tl.device.model.metadata import read_operating_points

    source, _ = converted
    recorded = json.loads((source.path / "train.json").read_text())["operating_points"]
    for variant in VARIANTS:
        path = source.out_dir / file_name(variant)
        points = read_operating_points(path)
        assert points == recorded["thresholds"] and set(points) == {"blue", "green", "red"}
        assert all(0.5 <= t <= 1.0 for t in points.values())
        calib = read_model_info(path).calibration
        assert calib["target"] == recorded["target"] and calib["temperature"] > 0


def test_report_table_and_sidecar(converted):
    source, outcome = converted
    report = json.loads((source.out_dir / CONVERT_JSON).read_text())
    assert list(report["variants"]) == list(VARIANTS)
    for entry in report["variants"].values():
        assert entry["bytes"] == Path(entry["path"]).stat().st_size
        assert entry["accuracy"] == 1.0 and entry["agreement"] == 1.0
        assert entry["latency_ms"] > 0
        assert set(entry["recall"]) == {"blue", "green", "red"}
    assert report["eval"]["images"] == 12 and report["accuracy_drop_ok"]
    assert (source.out_dir / "labels.txt").read_text().split() == ["blue", "green", "red"]
    table = format_table(outcome.results)
    assert "agreement with Keras" in table and "int8" in table
    assert format_table(outcome.results, markdown=True).splitlines()[1].startswith("| --- |")


def test_report_keeps_earlier_variants_whose_files_are_unchanged(tmp_path):
    kept = tmp_path / "model_int8.tflite"
    kept.write_bytes(b"x" * 10)
    write_report(tmp_path, {"variants": {"int8": {"path": str(kept), "bytes": 10},
                                         "dynamic": {"path": str(tmp_path / "gone.tflite"), "bytes": 5}}})
    write_report(tmp_path, {"variants": {"float16": {"path": "f", "bytes": 1}}})
    assert set(json.loads((tmp_path / CONVERT_JSON).read_text())["variants"]) == {"int8", "float16"}


def test_stratified_draw_is_deterministic_balanced_and_replaces_bad_files():
    groups = {"cat": [f"c{i}" for i in range(50)], "dog": [f"d{i}" for i in range(40)], "fox": ["f0", "f1", "bad"]}

    def load(path):
        if path == "bad":
            raise DataError("bad: not a decodable image")
        return path

    first, skipped = calibration.draw_stratified(groups, 30, seed=0, load=load)
    again, _ = calibration.draw_stratified(groups, 30, seed=0, load=load)
    other, _ = calibration.draw_stratified(groups, 30, seed=1, load=load)
    assert [p for _, p, _ in first] == [p for _, p, _ in again]
    assert [p for _, p, _ in first] != [p for _, p, _ in other]
    counts = {g: sum(1 for c, _, _ in first if c == g) for g in groups}
    assert counts == {"cat": 14, "dog": 14, "fox": 2}  # fox has 2 usable images; the rest is shared out
    assert [s.path for s in skipped] == ["bad"]


def test_calibration_skips_corrupt_images_and_accepts_flat_or_unknown_folders(tmp_path, caplog):
    root = write_colour_folder(tmp_path / "calib", per_class=3)
    (root / "red" / "empty.png").write_bytes(b"")
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "blue" / "cut.png").write_bytes((root / "blue" / "blue_000.png").read_bytes()[:40])
    (root / "raccoon").mkdir()
    (root / "raccoon" / "r.png").write_bytes((root / "red" / "red_000.png").read_bytes())
    spec = InputSpec(SIZE, SIZE)
    cal = calibration.load_calibration(root, spec, n=100, labels=["blue", "green", "red"], progress=False)
    assert cal.pixels.shape == (10, SIZE, SIZE, 3) and cal.pixels.dtype == np.uint8
    assert cal.per_class == {"blue": 3, "green": 3, "raccoon": 1, "red": 3}
    assert sorted(Path(s.path).name for s in cal.skipped) == ["cut.png", "empty.png", "notes.txt"]
    assert cal.unknown_classes == ["raccoon"] and "raccoon" in caplog.text
    batches = list(cal.representative_dataset()())
    assert len(batches) == 10 and batches[0][0].shape == (1, SIZE, SIZE, 3) and batches[0][0].dtype == np.float32
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((root / "green").iterdir()):
        (flat / p.name).write_bytes(p.read_bytes())
    assert len(calibration.load_calibration(flat, spec, progress=False).pixels) == 3
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="no usable images"):
        calibration.load_calibration(tmp_path / "junk", spec, progress=False)


def test_quantization_values():
    assert Quantization.named("int8").io == "uint8"
    assert Quantization.named("float16").io == "float32"
    assert Quantization.int8("int8").needs_calibration and not Quantization.dynamic().needs_calibration
    with pytest.raises(ConfigError, match="unknown"):
        Quantization("int4")
    with pytest.raises(ConfigError, match="--io"):
        Quantization.int8("int16")


def test_accuracy_drop_names_the_fixes():
    ref = check.Result("keras", "m", 1, accuracy=0.95)
    results = {"float32": check.Result("float32", "a", 1, accuracy=0.95),
               "int8": check.Result("int8", "b", 1, accuracy=0.93)}
    assert check.accuracy_drop(results, ref, max_drop=2.5) is None
    message = check.accuracy_drop(results, ref, max_drop=1.0)
    assert "2.0 points below float32" in message and "--calib-samples" in message and "--io float32" in message
    del results["float32"]  # then the Keras model is the baseline
    assert "below keras" in check.accuracy_drop(results, ref, max_drop=1.0)
