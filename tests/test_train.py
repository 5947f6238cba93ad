"""tl-train end to end on tiny synthetic colour classes (random weights), and its refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import V2_WEIGHTS
from tl.train.cli import main

# Random weights make MobileNet features collapse to ~1e-11 (nothing to learn from), so runs that
# must learn use the real ImageNet weights at 96 px (fast); RANDOM covers the weights=None path.
TINY = ["--image-size", "96", "--weights", V2_WEIGHTS, "--epochs", "40", "--patience", "8"]
RANDOM = ["--image-size", "96", "--alpha", "0.35", "--weights", "none", "--epochs", "2"]


def run_cli(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="session")
def tiny_run(colour_data, imagenet_weights, tmp_path_factory):
    """A finished tl-train RUN_DIR on the colour folders (MobileNetV2 1.0 at 96 px)."""
    train, val = colour_data
    out = tmp_path_factory.mktemp("run") / "run"
    cache = tmp_path_factory.mktemp("cache")
    result = run_cli([train, "--out", out, "--val-dir", val, "--cache-dir", cache, *TINY])
    assert result.exit_code == 0, result.output
    return out, cache, result.output


def test_run_dir_has_every_artifact(tiny_run, colour_data):
    out, _, output = tiny_run
    for name in ("model.keras", "labels.txt", "train.json", "history.png", "confusion.png"):
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]  # no temp files left
    assert (out / "labels.txt").read_text().split() == ["blue", "green", "red"]
    rec = json.loads((out / "train.json").read_text())
    assert rec["input"] == {"height": 96, "width": 96, "color": "RGB", "resize": "squash", "pixel_range": "0..255"}
    assert rec["data"]["train_counts"] == {"blue": 12, "green": 12, "red": 12}
    assert rec["data"]["val_counts"] == {"blue": 4, "green": 4, "red": 4}
    val = rec["metrics"]["val"]
    assert set(val["per_class"]["red"]) == {"precision", "recall", "f1", "support"}
    assert np.array(val["confusion"]).sum() == 12
    assert val["accuracy"] >= 0.9  # solid colours are easy for ImageNet features
    assert {"total_s", "embed_s", "head_s"} <= set(rec["timings"])
    assert {"tensorflow", "keras", "numpy"} <= set(rec["versions"])
    assert rec["args"]["seed"] == 0
    assert "precision" in output and "accuracy" in output and "model.keras" in output


def test_saved_model_takes_raw_pixels_and_matches_the_report(tiny_run, colour_data):
    import keras

    from tl.device.data.dataset import scan_folder
    from tl.device.model.contract import InputSpec, prepare_image
    from tl.device.model.image import load_image

    out, _, _ = tiny_run
    model = keras.models.load_model(out / "model.keras")
    ds = scan_folder(colour_data[1])
    spec = InputSpec(96, 96)
    x = np.stack([prepare_image(load_image(s.path), spec) for s in ds.samples]).astype(np.float32)
    probs = model.predict(x, verbose=0)
    assert probs.shape == (12, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    acc = (probs.argmax(1) == [s.label for s in ds.samples]).mean()
    rec = json.loads((out / "train.json").read_text())
    assert acc == pytest.approx(rec["metrics"]["val"]["accuracy"], abs=1e-3)


def test_second_run_reuses_the_cache_and_is_reproducible(tiny_run, colour_data, tmp_path):
    out, cache, _ = tiny_run
    train, val = colour_data
    result = run_cli([train, "--out", tmp_path / "again", "--val-dir", val, "--cache-dir", cache, *TINY])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "again" / "train.json").read_text())
    # orig, flip (training rows) and the door views ir, small (open-set radii) of 36 images, plus 12 val originals.
    assert rec["data"]["cache"]["misses"] == 0 and rec["data"]["cache"]["hits"] == 36 * 4 + 12
    first = json.loads((out / "train.json").read_text())
    assert rec["metrics"] == first["metrics"]  # same seed, same data: same result


def test_random_weights_val_split_records_the_held_out_files(colour_data, tmp_path):
    train, _ = colour_data
    result = run_cli([train, "--out", tmp_path / "run", "--val-split", "0.25", "--cache-dir", tmp_path / "c",
                      "--views", "none", *RANDOM])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "run" / "train.json").read_text())
    assert rec["data"]["val_counts"] == {"blue": 3, "green": 3, "red": 3}
    assert len(rec["data"]["val_files"]) == 9
    from tl.train.artifacts import read_run

    run = read_run(tmp_path / "run")
    assert [s.label for s in run.val_samples()] == [y for _, y in rec["data"]["val_files"]]


# Two logical CPU devices, made before tl-train starts TensorFlow: MirroredStrategy then runs two replicas.
TWO_CPUS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tl.train.cli import main
main()
"""


def test_fine_tuning_and_mirrored_strategy_on_two_replicas(colour_data, tmp_path):
    train, val = colour_data
    args = [train, "--out", tmp_path / "ft", "--val-dir", val, "--cache-dir", tmp_path / "c",
            "--fine-tune-layers", "2", "--fine-tune-epochs", "1", "--strategy", "mirrored", "--hidden", "16", "--views", "none",
            *RANDOM]
    result = subprocess.run([sys.executable, "-c", TWO_CPUS, *map(str, args)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rec = json.loads((tmp_path / "ft" / "train.json").read_text())
    assert list(rec["history"]) == ["head", "fine-tune"]
    assert rec["environment"]["strategy"] == "MirroredStrategy" and rec["environment"]["replicas"] == 2
    assert rec["timings"]["fine_tune_s"] > 0


def test_multiworker_is_refused_with_the_way_to_more_machines(colour_data, tmp_path):
    train, val = colour_data
    result = CliRunner().invoke(main, [str(train), "--out", str(tmp_path / "run"), "--strategy", "multiworker"])
    assert result.exit_code == 2
    assert "--strategy multiworker was removed" in result.output and "--ray" in result.output
    assert "keras-team/keras#20585" in result.output and not (tmp_path / "run").exists()


def test_unfreeze_top_keeps_batchnorm_frozen():
    import keras

    from tl.train.finetune import unfreeze_top

    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    base.trainable = False
    count = unfreeze_top(base, 12)
    top = base.layers[-12:]
    assert count == sum(not isinstance(layer, keras.layers.BatchNormalization) for layer in top)
    assert all(not layer.trainable for layer in base.layers[:-12])
    assert all(not layer.trainable for layer in top if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_v3_backbones_build_with_preprocessing_inside(name):
    from tl.train.backbones import BackboneSpec, build_backbone

    features = build_backbone(BackboneSpec(name, 1.0, 96, None))
    out = features(np.full((1, 96, 96, 3), 255.0, np.float32))
    assert out.shape[0] == 1 and out.shape[-1] > 100


def test_interrupted_save_leaves_no_model(colour_data, tmp_path, monkeypatch):
    import keras

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", boom)
    train, val = colour_data
    result = CliRunner().invoke(main, [str(train), "--out", str(tmp_path / "run"), "--val-dir", str(val),
                                       "--cache-dir", str(tmp_path / "c"), *map(str, RANDOM)])
    assert result.exit_code == 130
    assert "nothing was written" in result.output
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "does not exist"),
        ("one_class", "at least 2 class folders"),
        ("no_usable", "have no usable image"),
        ("too_small", "too few to split"),
        ("bad_weights", "unreadable or does not fit"),
        ("missing_weights", "does not exist"),
        ("unwritable", "not writable"),
        ("val_unknown_class", "that DATA_DIR lacks"),
    ],
)
def test_refusals_exit_2_with_a_fix(setup, message, tmp_path, colour_data):
    from tests.conftest import write_colour_folder

    train, val = colour_data
    args = [train, "--out", tmp_path / "out", "--cache-dir", tmp_path / "c", *RANDOM]
    if setup == "missing":
        args[0] = tmp_path / "nope"
    elif setup == "one_class":
        args[0] = write_colour_folder(tmp_path / "one", per_class=3, colours={"red": (255, 0, 0)})
    elif setup == "no_usable":
        root = write_colour_folder(tmp_path / "d", per_class=3)
        for p in (root / "red").iterdir():
            p.write_bytes(b"")
        args[0] = root
    elif setup == "too_small":
        root = write_colour_folder(tmp_path / "d", per_class=3)
        for p in sorted((root / "red").iterdir())[1:]:
            p.unlink()
        args[0] = root
    elif setup == "bad_weights":
        (tmp_path / "w.h5").write_bytes(b"not hdf5")
        args += ["--weights", tmp_path / "w.h5"]
    elif setup == "missing_weights":
        args += ["--weights", tmp_path / "absent.h5"]
    elif setup == "unwritable":
        (tmp_path / "afile").write_text("x")
        args[2] = tmp_path / "afile" / "out"
    elif setup == "val_unknown_class":
        v = write_colour_folder(tmp_path / "v", per_class=2, colours={"purple": (128, 0, 128), "red": (255, 0, 0)})
        args += ["--val-dir", v]
    result = run_cli(args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()  # no empty RUN_DIR left behind
