"""tl-convert's command line: options, other model formats, Edge TPU, and every bad input (exit 2)."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_convert import make_tiny_run
from tl.convert import check, cli, edgetpu
from tl.device.model.metadata import read_model_info, strip_model_info


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, colour_data):
    train, val = colour_data
    return make_tiny_run(tmp_path_factory.mktemp("cli") / "run", train, val)


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A fresh copy of the tiny RUN_DIR that a test may spoil."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def tflite_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".tflite" in p.name)


def test_help_lists_every_option_with_its_default():
    out = " ".join(invoke("--help").output.split())  # undo click's line wrapping
    for option in ("--int8", "--float16", "--dynamic", "--float32", "--all", "--io", "--calib-dir", "--calib-samples",
                   "--seed", "--eval-dir", "--max-drop", "--edgetpu", "--labels", "--image-size", "--out",
                   "--check-only", "--frigate", "classifier_<variant>.tflite"):
        assert option in out
    for default in ("default: uint8", "default: 300", "default: 1.0", "default: the training data",
                    "default: the validation images"):
        assert default in out


def test_default_is_int8_and_check_only_rechecks(run_copy):
    result = invoke(run_copy, "--calib-samples", "9", "-q")
    assert result.exit_code == 0, result.output
    assert tflite_files(run_copy) == ["classifier_int8.tflite", "model_int8.tflite"]  # for other runtimes; tl-device
    assert "calibration: 9 images" in result.output and "(blue 3, green 3, red 3)" in result.output
    assert json.loads((run_copy / "convert.json").read_text())["calibration"]["samples"] == 9
    again = invoke(run_copy, "--check-only")
    assert again.exit_code == 0, again.output
    assert "int8" in again.output and "converting" not in again.output


def test_frigate_needs_what_frigate_feeds(run_copy):
    result = invoke(run_copy, "--frigate", run_copy / "frigate", "-q")
    assert result.exit_code == 2 and "--image-size 224" in result.output
    assert tflite_files(run_copy) == [] and not (run_copy / "frigate").exists()


@pytest.mark.parametrize("io,dtype,zero_point", [("int8", "int8", -128), ("float32", "float32", 0)])
def test_io_types(run_copy, io, dtype, zero_point):
    result = invoke(run_copy, "--io", io, "--calib-samples", "9")
    assert result.exit_code == 0, result.output
    entry = json.loads((run_copy / "convert.json").read_text())["variants"]["int8"]
    assert entry["io"] == dtype and entry["agreement"] == 1.0
    if dtype == "int8":
        assert entry["input_quantization"][1] == zero_point


def test_keras_file_and_savedmodel_with_labels(tiny_run, tmp_path, colour_data):
    import keras

    train, val = colour_data
    model = keras.saving.load_model(tiny_run / "model.keras")
    import tensorflow as tf

    # One frame at a time, as exported for the Edge TPU: the reference must feed it batches of 1.
    model.export(str(tmp_path / "sm"), input_signature=[tf.TensorSpec((1, 32, 32, 3), tf.float32)], verbose=False)
    (tmp_path / "names.txt").write_text("blue\ngreen\nred\n")
    result = invoke(tmp_path / "sm", "--labels", tmp_path / "names.txt", "--image-size", 32, "--float32",
                    "--eval-dir", val, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read_model_info(tmp_path / "out" / "model_float32.tflite").labels == ["blue", "green", "red"]
    assert (tmp_path / "out" / "labels.txt").is_file()
    shutil.copy(tiny_run / "model.keras", tmp_path / "m.keras")
    result = invoke(tmp_path / "m.keras", "--labels", tmp_path / "names.txt", "--calib-dir", train, "--int8")
    assert result.exit_code == 0, result.output
    # No --eval-dir: agreement is still measured, on the calibration images.
    assert "agreement on the calibration images" in result.output
    assert json.loads((tmp_path / "convert.json").read_text())["variants"]["int8"]["agreement"] == 1.0
    result = invoke(tmp_path / "m.keras", "--labels", tmp_path / "names.txt", "--image-size", 64, "--float32")
    assert result.exit_code == 2 and "takes 32x32 images, not 64x64" in result.output


def test_edgetpu_lists_ops_then_explains_how_to_get_the_compiler(run_copy, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = invoke(run_copy, "--edgetpu", "--calib-samples", "6")
    assert result.exit_code == 0, result.output
    assert "all" in result.output and "on the Edge TPU's list" in result.output
    assert "coral-edgetpu-stable" in result.output and "apt-get install edgetpu-compiler" in result.output
    assert json.loads((run_copy / "convert.json").read_text())["edgetpu"]["compiled"] is False


def test_edgetpu_compiles_with_the_compiler_and_keeps_the_info(run_copy, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "edgetpu_compiler"
    # Stands in for the real compiler: writes <stem>_edgetpu.tflite into -o DIR, as it does.
    fake.write_text('#!/bin/sh\nout="$3"; src="$4"; b=$(basename "$src" .tflite)\n'
                    'cp "$src" "$out/${b}_edgetpu.tflite"; echo "Model compiled successfully."\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = invoke(run_copy, "--edgetpu", "--calib-samples", "6")
    assert result.exit_code == 0, result.output
    info = read_model_info(run_copy / "model_int8_edgetpu.tflite")
    assert info.variant == "edgetpu" and info.labels == ["blue", "green", "red"]


def test_ops_that_stay_float_are_named():
    ops = [edgetpu.Op(0, "QUANTIZE", ("int8", "uint8")), edgetpu.Op(1, "SIN", ("float32",)),
           edgetpu.Op(2, "DEQUANTIZE", ("float32", "int8")), edgetpu.Op(3, "GATHER", ("int32", "int8"))]
    assert [op.name for op in edgetpu.float_ops(ops)] == ["SIN"]
    assert [op.name for op in edgetpu.edgetpu_unmapped(ops)] == ["SIN", "DEQUANTIZE", "GATHER"]
    assert "SIN x1 (float32)" in edgetpu.summarize_ops(ops)


def test_int8_accuracy_drop_exits_3_with_advice(run_copy, monkeypatch):
    monkeypatch.setattr(check, "accuracy_drop", lambda *a: "int8 accuracy 50.0% is 50.0 points below float32")
    result = invoke(run_copy, "--calib-samples", "6")
    assert result.exit_code == 3 and "50.0 points below" in result.output
    assert (run_copy / "model_int8.tflite").is_file()


# --- bad input: a clear message, exit code 2, nothing half-written ------------------------------------------


def test_missing_run_dir_or_model(tmp_path):
    result = invoke(tmp_path / "nope")
    assert result.exit_code == 2 and "does not exist" in result.output and "tl-train" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke(tmp_path / "empty")
    assert result.exit_code == 2 and "has no model.keras" in result.output
    result = invoke(tmp_path / "model.onnx")
    assert result.exit_code == 2


def test_output_size_must_match_labels(run_copy):
    (run_copy / "labels.txt").write_text("blue\ngreen\nred\nraccoon\n")
    result = invoke(run_copy)
    assert result.exit_code == 2 and "outputs 3 scores but there are 4 labels" in result.output
    assert tflite_files(run_copy) == []


def test_calibration_folder_without_usable_images(run_copy, tmp_path):
    bad = tmp_path / "bad" / "dog"
    bad.mkdir(parents=True)
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.jpg").write_text("hello")
    result = invoke(run_copy, "--calib-dir", bad.parent)
    assert result.exit_code == 2 and "no usable images" in result.output
    result = invoke(run_copy, "--calib-dir", tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output
    assert tflite_files(run_copy) == []


def test_calibration_with_unknown_classes_warns_and_goes_on(run_copy, tmp_path, colour_data):
    calib = tmp_path / "calib"
    shutil.copytree(colour_data[0] / "red", calib / "raccoon")
    result = invoke(run_copy, "--calib-dir", calib)
    assert result.exit_code == 0, result.output
    assert "raccoon" in result.output and "using them anyway" in result.output


def test_unwritable_output(run_copy, tmp_path):
    (tmp_path / "file").write_text("x")
    result = invoke(run_copy, "--out", tmp_path / "file" / "sub")
    assert result.exit_code == 2 and "not writable" in result.output


def test_converter_failure_names_the_op(tmp_path):
    import tensorflow as tf

    class Erf(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
        def __call__(self, x):
            return tf.nn.softmax(tf.reduce_mean(tf.math.erf(x / 255.0), axis=[1, 2]))

    tf.saved_model.save(Erf(), str(tmp_path / "sm"), signatures=Erf().__call__)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    result = invoke(tmp_path / "sm", "--float32")
    assert result.exit_code == 2 and "tf.Erf" in result.output and "converting to float32 failed" in result.output
    assert tflite_files(tmp_path) == [] and not list(tmp_path.glob(".*tmp*"))


def test_corrupt_or_truncated_tflite_is_refused_with_its_path(run_copy):
    assert invoke(run_copy, "--float32", "-q").exit_code == 0
    model = run_copy / "model_float32.tflite"
    flatbuffer = strip_model_info(model.read_bytes())
    model.write_bytes(flatbuffer[: len(flatbuffer) // 2])
    result = invoke(run_copy, "--check-only")
    assert result.exit_code == 2 and str(model) in result.output and "cannot load" in result.output
    model.write_bytes(b"<html>not a model</html>" * 10)
    result = invoke(run_copy, "--check-only")
    assert result.exit_code == 2 and str(model) in result.output and "not a TFLite model" in result.output


def test_interrupted_conversion_leaves_no_file_under_a_final_name(run_copy, monkeypatch):
    from tl.convert import export
    from tl.device.data.atomic import atomic_path, write_bytes

    def cut_short(path, data):
        if "float16" not in path.name:
            return write_bytes(path, data)
        with atomic_path(path) as tmp:  # Ctrl-C half-way through writing the second model
            tmp.write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(export, "write_bytes", cut_short)
    result = invoke(run_copy, "--float32", "--float16")
    assert result.exit_code == 130 and "interrupted" in result.output
    assert tflite_files(run_copy) == ["model_float32.tflite"] and not list(run_copy.glob(".*tmp*"))
