"""Open-set end to end: tl-convert's two-output model and embedder, read on the device, and a door replay."""

import json
import shutil

import cv2
import numpy as np
import pytest

from tests.support.openset import closeup
from tl.device.door import config
from tl.device.door.events import read_events
from tl.device.door.loop import run_door
from tl.device.errors import ModelError
from tl.device.model.classifier import Classifier
from tl.device.model.contract import prepare_frame
from tl.device.model.metadata import embed_model_info, read_model_info, strip_model_info
from tl.device.recognition.embedder import Embedder
from tl.device.recognition.openset import STATS_NAME
from tl.device.recognition.recognizer import openset_for


def orange_noise(rng):
    """Dog-coloured noise: the tiny model calls it "dog" with full confidence, yet it is nothing it saw."""
    return np.clip(np.array([40, 140, 235]) + rng.normal(0, 60, (120, 160, 3)), 0, 255).astype(np.uint8)


def solid_orange(rng):
    return np.full((120, 160, 3), (40, 140, 235), np.uint8)


STRANGERS = {"orange_noise": orange_noise, "solid_orange": solid_orange}


def frame(kind, rng):
    return STRANGERS[kind](rng) if kind in STRANGERS else closeup(kind, rng)


def write_replay(folder, timeline, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = [k for k, n in timeline for _ in range(n)]
    for i, kind in enumerate(kinds):
        cv2.imwrite(str(folder / f"frame_{i:05d}.png"), frame(kind, rng))
    return folder


def replay(model, frames, tmp_path, **extra):
    events = tmp_path / f"events-{len(list(tmp_path.iterdir()))}.jsonl"
    cfg = config.load_config(None, {"model": str(model), "source": str(frames), "allow": ("dog",), "door": "none",
                                    "threshold": 0.7, "open_seconds": 1.0, "events": str(events), **extra})
    run_door(cfg)
    return read_events(events)


def test_classifier_has_scores_first_and_a_named_embedding_output(openset_run):
    info = read_model_info(openset_run["model"])
    assert info.extra["outputs"] == {"scores": "scores", "embedding": "embedding"}
    assert info.extra["embedding"]["dim"] == 32 and len(info.extra["embedding"]["id"]) == 16
    assert info.extra["openset"]["shift_images"] > 0 and STATS_NAME in info.files
    classifier = Classifier(openset_run["model"])
    details = classifier.interpreter.get_output_details()
    # Output 0 is the scores, so readers that take the first output (older tl-device, tl-bench) still work.
    assert details[0]["name"] == "scores" and tuple(details[0]["shape"]) == (1, 3)
    scores = classifier.classify_frame(closeup("dog", np.random.default_rng(0)))
    assert classifier.labels[int(np.argmax(scores))] == "dog"
    assert np.linalg.norm(classifier.embedding()) == pytest.approx(1.0, abs=1e-4)


def test_embedder_describes_itself_and_matches_the_classifier_embedding(openset_run):
    embedder = Embedder(openset_run["embedder"])
    classifier = Classifier(openset_run["model"])
    assert embedder.info.task == "embedding" and embedder.dim == 32
    assert embedder.embedding_id == classifier.info.extra["embedding"]["id"]
    rng = np.random.default_rng(1)
    for kind in ("dog", "raccoon", "background"):
        bgr = closeup(kind, rng)
        classifier.classify_frame(bgr)
        e = embedder.embed_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        assert float(e @ classifier.embedding()) > 0.99  # the same backbone, int8 either way
    with pytest.raises(ModelError, match="embedding extractor"):
        Classifier(openset_run["embedder"])


def swapped_outputs(model, path):
    """Writes `model` with its outputs reversed and renamed, as another converter might: only the recorded dim is left."""
    from tensorflow.lite.tools import flatbuffer_utils

    raw = strip_model_info(model.read_bytes())
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(raw))
    graph = m.subgraphs[0]
    for i, index in enumerate(graph.outputs):
        graph.tensors[index].name = f"StatefulPartitionedCall:{i}".encode()
    graph.outputs = graph.outputs[::-1]
    path.write_bytes(embed_model_info(bytes(flatbuffer_utils.convert_object_to_bytearray(m)), read_model_info(model)))
    return path


def test_outputs_are_found_by_shape_when_names_and_order_are_lost(openset_run, tmp_path):
    path = swapped_outputs(openset_run["model"], tmp_path / "swapped.tflite")
    good, bad = Classifier(openset_run["model"]), Classifier(path)
    assert bad.interpreter.get_output_details()[0]["shape"][-1] == 32  # embedding first now
    rng = np.random.default_rng(2)
    bgr = closeup("raccoon", rng)
    assert np.allclose(good.classify_frame(bgr), bad.classify_frame(bgr))
    assert np.allclose(good.embedding(), bad.embedding())


def test_convert_checks_and_tl_bench_read_the_model_as_the_device_does(openset_run, tmp_path):
    from tl.convert import check
    from tl.device.bench.worker import LiteRunner

    path = swapped_outputs(openset_run["model"], tmp_path / "swapped.tflite")  # output 0 is the embedding now
    device = Classifier(path)
    rng = np.random.default_rng(8)
    pixels = np.stack([prepare_frame(closeup(k, rng), device.spec) for k in ("dog", "raccoon", "background")])
    expected = np.stack([device.classify_pixels(x) for x in pixels])
    evalset = check.EvalSet(pixels, np.array([0, 1, 2]), [], [], "test")
    result = check.check_model(path, evalset, expected, device.labels, device.spec, progress=False)
    assert result.agreement == 1.0 and result.max_abs_diff == 0.0  # the scores, not the embedding's first values
    runner = LiteRunner(path, threads=1)
    for x, scores in zip(pixels, expected):
        runner.set_pixels(x)
        runner.invoke()
        assert np.array_equal(runner.scores(), scores)


def test_convert_checks_a_model_in_memory_through_make_interpreter(openset_run, monkeypatch):
    from tl.convert import openset as oset
    from tl.device.model import runtime

    made = []

    def spy(model, *args, **kwargs):
        made.append(type(model))
        return runtime.make_interpreter(model, *args, **kwargs)

    monkeypatch.setattr(oset, "make_interpreter", spy)
    device = Classifier(openset_run["model"])
    rng = np.random.default_rng(9)
    pixels = np.stack([prepare_frame(closeup(k, rng), device.spec) for k in ("dog", "raccoon")])
    in_memory = oset._embed_bytes(strip_model_info(openset_run["model"].read_bytes()), device.info, pixels,
                                  len(device.labels))
    assert made == [bytes]
    for x, e in zip(pixels, in_memory):
        device.classify_pixels(x)
        assert np.allclose(e, device.embedding())


def test_convert_report_has_the_open_set_cost(openset_run):
    report = json.loads((openset_run["run"] / "convert.json").read_text())
    o = report["openset"]["int8"]
    assert o["method"] == "embedding" and o["quantile"] == 0.98 and o["images"] == 24
    assert o["accuracy_with_rejection"] >= o["accuracy"] - 0.05
    assert report["embedder"]["int8"]["cosine_to_float_median"] > 0.99


def test_statistics_of_another_training_are_left_out(openset_run, tmp_path, caplog):
    from tl.convert import openset as oset
    from tl.convert.source import open_source

    run = shutil.copytree(openset_run["run"], tmp_path / "run")
    record = json.loads((run / "train.json").read_text())
    record["openset"]["sha256"] = "0" * 64  # as if training was cut off after train.json
    (run / "train.json").write_text(json.dumps(record))
    assert oset.load_run_stats(open_source(run)) is None
    assert "does not belong to this run" in caplog.text


def test_unknown_visitors_never_open_the_door_in_a_replay(openset_run, tmp_path):
    frames = write_replay(tmp_path / "strangers", [("background", 5), ("solid_orange", 10), ("background", 5),
                                                   ("orange_noise", 10), ("background", 5)])
    closed = replay(openset_run["model"], frames, tmp_path)
    assert [e["event"] for e in closed] == ["start", "stop"]
    assert closed[-1]["unknown"] >= 20 and "open-set embedding distance" in closed[0]["reason"]
    # Without open-set the same evening lets the strangers in: the check above can fail.
    opened = replay(openset_run["model"], frames, tmp_path, openset=False)
    assert "door_open" in [e["event"] for e in opened]
    assert "open-set off" in opened[0]["reason"]


def test_the_dog_still_gets_in_with_open_set_on(openset_run, tmp_path):
    frames = write_replay(tmp_path / "dog", [("background", 5), ("dog", 8), ("background", 20)], seed=3)
    events = replay(openset_run["model"], frames, tmp_path)
    assert [e["event"] for e in events] == ["start", "door_open", "door_close", "stop"]
    assert events[-1]["unknown"] <= 2


def test_device_open_set_refuses_what_the_model_cannot_do(openset_run, tiny_models):
    plain = Classifier(tiny_models["tiny_int8"])  # an older model: no statistics
    assert openset_for(plain) is None
    with pytest.raises(ModelError, match="no open-set statistics"):
        openset_for(plain, enabled=True)
    assert openset_for(Classifier(openset_run["model"]), enabled=False) is None


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests.support.scenes import build_models

    return build_models(tmp_path_factory.getbasetemp() / "device_models")


def test_classify_says_known_or_unknown(openset_run, tmp_path):
    from click.testing import CliRunner

    from tl.device.cli.tl_device import main

    rng = np.random.default_rng(6)
    cv2.imwrite(str(tmp_path / "dog.png"), closeup("dog", rng))
    cv2.imwrite(str(tmp_path / "noise.png"), orange_noise(rng))
    result = CliRunner().invoke(main, ["classify", str(openset_run["model"]), str(tmp_path / "dog.png"),
                                       str(tmp_path / "noise.png")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    dog, noise = result.output.split("noise.png")
    assert "known: dog embedding" in dog and "UNKNOWN" not in dog
    assert "UNKNOWN: dog embedding" in noise


def test_tl_train_writes_the_statistics_and_their_hash(colour_data, tmp_path):
    import hashlib

    from click.testing import CliRunner

    from tests.test_train import RANDOM
    from tl.train.cli import main as train_main

    train, val = colour_data
    out = tmp_path / "run"
    result = CliRunner().invoke(train_main, [str(a) for a in (train, "--out", out, "--val-dir", val, "--cache-dir",
                                                              tmp_path / "c", "--views", "none", *RANDOM)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "train.json").read_text())["openset"]
    assert record["sha256"] == hashlib.sha256((out / STATS_NAME).read_bytes()).hexdigest()
    assert record["prototypes"] == {"blue": 1, "green": 1, "red": 1} and record["counts"]["red"] == 12
    assert record["validation"]["images"] == 12 and "open-set:" in result.output
