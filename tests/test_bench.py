"""tl-bench on tiny synthetic float and int8 models: every field present and sane, every output parseable."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import COLOURS, write_colour_folder
from tl.device.bench.results import Latency, Row, add_accuracy, add_comparisons
from tl.device.cli import tl_bench as bench
from tl.device.model.contract import InputSpec, prepare_image
from tl.device.model.image import load_image
from tl.device.model.metadata import ModelInfo, embed_model_info

SIZE = 16
LABELS = sorted(COLOURS)  # blue, green, red: the colour_data folders
RUNS = ["--runs", "20", "--warmup", "2"]


def _train(train_dir):
    import keras

    keras.utils.set_random_seed(0)
    files = sorted(p for p in train_dir.rglob("*.png"))
    x = np.stack([prepare_image(load_image(p), InputSpec(SIZE, SIZE)) for p in files]).astype(np.float32)
    y = np.array([LABELS.index(p.parent.name) for p in files])
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(LABELS), activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=12, verbose=0)
    return model, x


def _convert(model, x, int8):
    import warnings

    import tensorflow as tf

    warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


@pytest.fixture(scope="session")
def models(tmp_path_factory, colour_data):
    """{name: path}: float and uint8-I/O int8 models with labels inside, a bare one, broken files, a Keras run."""
    folder = tmp_path_factory.mktemp("bench_models")
    model, x = _train(colour_data[0])
    paths = {}
    for variant, int8 in (("float32", False), ("int8", True)):
        raw = _convert(model, x, int8)
        info = ModelInfo(labels=LABELS, input=InputSpec(SIZE, SIZE), variant=variant)
        paths[variant] = folder / f"model_{variant}.tflite"
        paths[variant].write_bytes(embed_model_info(raw, info))
        if not int8:
            paths["bare"] = folder / "bare.tflite"
            paths["bare"].write_bytes(raw)
            paths["truncated"] = folder / "truncated.tflite"
            paths["truncated"].write_bytes(raw[: len(raw) // 3])
    paths["not_tflite"] = folder / "notes.tflite"
    paths["not_tflite"].write_text("not a model\n" * 10)
    paths["labels"] = folder / "labels.txt"
    paths["labels"].write_text("\n".join(LABELS) + "\n")
    paths["keras"] = folder / "model.keras"
    model.save(paths["keras"])
    return paths


def run_cli(*args):
    return CliRunner().invoke(bench.main, [str(a) for a in args])


@pytest.fixture(scope="module")
def full_run(models, colour_data, tmp_path_factory):
    """One tl-bench run of float + int8 at 1 and 2 threads with --data and every output."""
    out = tmp_path_factory.mktemp("bench_out")
    files = {k: out / f"bench.{k}" for k in ("json", "md", "png")}
    result = run_cli(models["float32"], models["int8"], "--data", colour_data[1], "--threads", "1,2", *RUNS,
                     "--json", files["json"], "--markdown", files["md"], "--plot", files["png"])
    assert result.exit_code == 0, result.output
    return result.output, files


def test_every_row_has_sane_latency_memory_and_size(full_run):
    report = json.loads(full_run[1]["json"].read_text())
    rows = report["rows"]
    assert [(r["variant"], r["threads"]) for r in rows] == [("float32", 1), ("float32", 2), ("int8", 1), ("int8", 2)]
    for r in rows:
        lat = r["latency"]
        assert r["status"] == "ok" and lat["count"] == 20
        assert lat["p99_ms"] >= lat["p90_ms"] >= lat["median_ms"] >= lat["min_ms"] > 0
        assert lat["max_ms"] >= lat["p99_ms"] and lat["mean_ms"] > 0 and lat["std_ms"] >= 0
        assert r["load_ms"] > 0 and r["first_ms"] > 0 and r["size_bytes"] > 0
        assert r["peak_rss_mb"] >= r["rss_base_mb"] > 0
        assert r["delegate"] and r["runtime"] and r["input"] == f"{SIZE}x{SIZE} " + ("uint8" if r["variant"] == "int8" else "float32")


def test_accuracy_recall_confusion_agreement_and_throughput(full_run):
    report = json.loads(full_run[1]["json"].read_text())
    assert report["data"]["images"] == 12 and report["data"]["classes"] == LABELS
    for r in report["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["images"] == 12
        assert set(r["recall"]) == set(LABELS) and all(0.0 <= v <= 1.0 for v in r["recall"].values())
        assert np.array(r["confusion"]).sum() == 12 and r["classes"] == LABELS
        assert 0.0 <= r["agreement"] <= 1.0 and r["e2e_fps"] > 0 and r["e2e_ms"] > 0
    first = report["rows"][0]
    assert first["agreement"] == 1.0 and first["vs_first"] == 1.0  # the reference against itself
    assert first["accuracy"] > 0.9  # solid colours, learnt


def test_every_output_names_machine_runtime_and_delegate(full_run):
    output, files = full_run
    report = json.loads(files["json"].read_text())
    assert report["machine"]["cores"] >= 1 and report["runtime"] and report["delegate"]
    markdown = files["md"].read_text()
    for text in (output, markdown):
        assert report["machine_line"] in text and report["runtime"] in text and report["delegate"] in text
        assert "median" in text and "p99" in text and "model_int8.tflite" in text
    assert "| true \\ predicted |" in markdown and markdown.count("| model_") >= 4


def test_plot_is_a_png_of_the_expected_size(full_run):
    from PIL import Image

    with Image.open(full_run[1]["png"]) as image:
        assert image.format == "PNG" and image.size == (800, 500)


def test_latency_only_run_without_data_or_embedded_labels(models, tmp_path):
    result = run_cli(models["bare"], "--runs", "5", "--warmup", "0", "--json", tmp_path / "b.json", "--plot", tmp_path / "b.png")
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["status"] == "ok" and row["accuracy"] is None and row["latency"]["count"] == 5


def test_labels_file_stands_in_for_a_model_that_carries_none(models, colour_data):
    result = run_cli(models["bare"], "--labels", models["labels"], "--data", colour_data[1], "--runs", "3")
    assert result.exit_code == 0, result.output
    assert "recall bare.tflite: blue" in result.output


def test_broken_models_get_failed_rows_and_the_others_still_run(models, colour_data, tmp_path):
    result = run_cli(models["float32"], models["not_tflite"], models["truncated"], models["int8"],
                     "--data", colour_data[1], "--runs", "3", "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert rows["notes.tflite"]["status"].startswith("failed: model") and "not a TFLite model" in rows["notes.tflite"]["status"]
    assert rows["truncated.tflite"]["status"].startswith("failed: ")
    assert rows["model_float32.tflite"]["status"] == rows["model_int8.tflite"]["status"] == "ok"
    assert "notes.tflite" in result.output and "failed: " in result.output


def test_nothing_measurable_exits_2(models):
    result = run_cli(models["not_tflite"], "--runs", "2")
    assert result.exit_code == 2 and "no model could be measured" in result.output


@pytest.mark.parametrize("threads", ["0", "-1", "1,0", "two", ""])
def test_bad_thread_counts_are_refused(models, threads):
    result = run_cli(models["float32"], "--threads", threads)
    assert result.exit_code == 2 and "--threads" in result.output


def test_empty_data_folders_are_refused(models, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli(models["float32"], "--data", tmp_path / "empty")
    assert result.exit_code == 2 and "no class sub-folders" in result.output
    (tmp_path / "hollow" / "blue").mkdir(parents=True)
    result = run_cli(models["float32"], "--data", tmp_path / "hollow")
    assert result.exit_code == 2 and "holds no files" in result.output
    result = run_cli(models["float32"], "--data", tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_data_classes_the_model_does_not_know_are_refused(models, tmp_path):
    pets = write_colour_folder(tmp_path / "pets", per_class=1, colours={"dog": (1, 2, 3), "blue": (0, 0, 200)})
    result = run_cli(models["float32"], models["int8"], "--data", pets, "--runs", "2")
    assert result.exit_code == 2
    assert "dog" in result.output and "model_float32.tflite" in result.output and "--labels" in result.output


def test_undecodable_data_is_a_clear_error(models, tmp_path):
    (tmp_path / "bad" / "blue").mkdir(parents=True)
    (tmp_path / "bad" / "blue" / "a.jpg").write_text("not an image")
    result = run_cli(models["float32"], "--data", tmp_path / "bad", "--runs", "2")
    assert result.exit_code == 2 and "could be decoded" in result.output


def test_rounds_are_interleaved_and_pooled(models):
    report = bench.benchmark([str(models["int8"]), str(models["float32"])], [1], runs=4, warmup=0, rounds=2)
    for row in report.rows:
        assert row.ok and row.rounds == 2 and row.latency.count == 8 and row.spread_ms >= 0
    assert report.rows[1].vs_first > 0 and report.rows[0].vs_first == 1.0


def test_keras_row_runs_with_tensorflow(models, colour_data):
    report = bench.benchmark([str(models["keras"]), str(models["int8"])], [1], runs=3, warmup=1, data=colour_data[1])
    keras_row, int8_row = report.rows
    assert keras_row.ok, keras_row.error
    assert keras_row.kind == "keras" and keras_row.input == f"{SIZE}x{SIZE} float32"
    assert "tensorflow" in keras_row.runtime and keras_row.delegate == "TensorFlow CPU"
    assert keras_row.agreement == 1.0 and 0.0 <= int8_row.agreement <= 1.0


def test_keras_row_without_tensorflow_says_how_to_install_it(models, monkeypatch):
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    subject = bench.inspect_model(models["keras"], "model.keras", None)
    assert "pip install 'tl-edge[train]'" in subject.error


def test_missing_matplotlib_is_refused_before_the_run_with_the_fix(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run_cli(models["float32"], "--plot", tmp_path / "b.png")
    assert result.exit_code == 2 and "pip install matplotlib" in result.output


def test_bench_modules_import_neither_tensorflow_nor_matplotlib():
    code = ("import sys, tl.device.cli.tl_bench, tl.device.bench.worker\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_latency_statistics_match_numpy():
    samples = np.arange(1, 101) * 1_000_000  # 1..100 ms
    lat = Latency.from_ns(samples)
    assert (lat.min_ms, lat.max_ms, lat.count) == (1.0, 100.0, 100)
    assert lat.median_ms == pytest.approx(50.5) and lat.p90_ms == pytest.approx(90.1) and lat.p99_ms == pytest.approx(99.01)
    assert lat.mean_ms == pytest.approx(50.5) and lat.std_ms == pytest.approx(np.std(np.arange(1, 101)))


def test_parse_threads():
    assert bench.parse_threads("1, 2,4,2") == [1, 2, 4]
    for bad in ("0", "-2", "x", "1,,2"):
        with pytest.raises(bench.ConfigError):
            bench.parse_threads(bad)


def test_predictions_outside_the_data_classes_go_to_other_and_agreement_counts_matches():
    lat = Latency.from_ns([1_000_000])
    ref = Row(model="a", name="a", threads=1, latency=lat, predictions=["cat", "dog", None, "cat"])
    other = Row(model="b", name="b", threads=1, latency=lat, predictions=["cat", "tabby", "dog", "dog"])
    add_accuracy(other, ["cat", "dog", "dog", "cat"], ["cat", "dog"])
    assert other.classes == ["cat", "dog", "(other)"] and other.accuracy == pytest.approx(0.5)
    assert other.recall == {"cat": 0.5, "dog": 0.5}
    add_comparisons([ref, other], "a")
    assert ref.agreement == 1.0 and other.agreement == pytest.approx(1 / 3, abs=1e-4)  # the None is left out
