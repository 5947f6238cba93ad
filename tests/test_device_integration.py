"""tl-device on real pixels: Google's uint8 ImageNet MobileNetV2 (standard metadata, no tl-edge info) and the Coral test photos."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import SHARED
from tests.support.scenes import make_scene
from tl.device.cli.tl_device import main
from tl.device.door.events import read_events
from tl.device.model.metadata import read_labels

CORAL = SHARED / "coral"
MODEL = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"
IMAGES = CORAL / "images"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def coral():
    if not (MODEL.is_file() and LABELS.is_file() and IMAGES.is_dir()):
        pytest.skip(f"Coral test data not found in {CORAL}")
    return MODEL


def test_classify_names_the_coral_photos(coral):
    images = [IMAGES / n for n in ("cat.png", "pets.jpg", "grace_hopper.png")]
    result = CliRunner().invoke(main, ["classify", str(coral), *map(str, images), "--labels", str(LABELS),
                                       "--threads", "2", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # stderr carries the warning that the model has no input spec
    tops = [lines[i + 1].split(None, 1) for i in (0, 3, 6)]
    assert tops[0][1] == "Egyptian cat" and float(tops[0][0]) > 0.6
    assert tops[1][1] in ("Italian greyhound", "Boston bull, Boston terrier")
    assert tops[2][1] == "military uniform" and float(tops[2][0]) > 0.8


def test_classify_without_labels_says_how_to_fix(coral):
    # Coral's classifiers carry their labels (tests/test_metadata.py); its bare embedding extractor carries none.
    bare = CORAL / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    result = CliRunner().invoke(main, ["classify", str(bare), str(IMAGES / "cat.png")])
    assert result.exit_code == 2
    assert "carries no labels" in result.output and "--labels" in result.output


def composite(photo, rng):
    """A 640x480 porch frame with a photo pasted into the door area (the ROI)."""
    frame = make_scene("background", rng)
    if photo is not None:
        frame[40:440, 120:520] = cv2.resize(cv2.imread(str(IMAGES / photo)), (400, 400), interpolation=cv2.INTER_AREA)
    return frame


def test_porch_video_through_the_imagenet_model_with_a_toml_config(coral, tmp_path):
    rng = np.random.default_rng(0)
    plan = [(None, 5), ("pets.jpg", 6), (None, 15), ("cat.png", 4), ("imprinting_dog_train_0.png", 6), (None, 3)]
    path = tmp_path / "porch.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    for photo, count in plan:
        for _ in range(count):
            writer.write(composite(photo, rng))
    writer.release()
    labels = read_labels(LABELS)
    dogs, cats = labels[152:270], labels[282:287]  # ImageNet's dog breeds and domestic cats
    assert dogs[0] == "Chihuahua" and cats[-1] == "Egyptian cat"
    toml = tmp_path / "door.toml"
    toml.write_text("\n".join([
        f"model = {json.dumps(str(coral))}",
        f"labels = {json.dumps(str(LABELS))}",
        'source = "porch.avi"',
        'roi = "80,0,480,480"',
        f"allow = {json.dumps(dogs)}",
        f"deny = {json.dumps(cats)}",
        "threshold = 0.3", 'votes = "3/5"', "open_seconds = 1", "lockout_seconds = 30",
        'door = "mock"', "threads = 2", 'events = "events.jsonl"', 'snapshots = "snaps"',
    ]))
    runner = CliRunner()
    checked = runner.invoke(main, ["check-config", str(toml)])
    assert checked.exit_code == 0, checked.output
    assert "ignore background" in checked.output  # ImageNet's line 0 is "background"
    result = runner.invoke(main, ["run", "--config", str(toml)])
    assert result.exit_code == 0, result.output
    events = read_events(tmp_path / "events.jsonl")
    assert [(e["frame"], e["event"]) for e in events] == [
        (None, "start"), (7, "door_open"), (20, "door_close"), (26, "denied"), (None, "stop")]
    assert events[1]["label"] in ("Italian greyhound", "toy terrier", "Boston bull, Boston terrier")
    assert events[3]["label"] in cats
    assert len(list((tmp_path / "snaps").glob("*.jpg"))) == 2
