"""Night frames: monochrome inputs are found, denoised and stretched; colour inputs are never touched."""

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.openset import closeup
from tests.support.scenes import SCENE_LABELS, make_scene, timeline, write_frames
from tl.device.cli.tl_device import main
from tl.device.door import config
from tl.device.door.events import read_events
from tl.device.door.loop import run_door
from tl.device.model import night
from tl.device.model.classifier import Classifier
from tl.device.recognition.embedder import Embedder


def _mono(values):
    return np.repeat(np.asarray(values, np.uint8)[..., None], 3, axis=2)


def _flat_night(frame, gain=0.4, offset=70.0):
    """A colour frame as a dull night camera gives it: its grey levels squeezed to gain x + offset."""
    return _mono(frame.mean(axis=2) * gain + offset)


def test_monochrome_is_one_channel_in_three_copies():
    rng = np.random.default_rng(0)
    grey = _mono(rng.integers(0, 256, (64, 64)))
    assert night.is_monochrome(grey)
    colour = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert not night.is_monochrome(colour)
    tinted = grey.copy()
    tinted[..., 2] = np.clip(tinted[..., 2].astype(int) + 12, 0, 255)  # a warm cast: a colour camera, not IR
    assert not night.is_monochrome(tinted)


def test_enhance_stretches_a_flat_noisy_frame_to_the_full_range_and_smooths_the_noise():
    rng = np.random.default_rng(1)
    scene = np.tile(np.linspace(90, 130, 64), (64, 1))  # a flat gradient: grey levels 90..130 only
    noisy = _mono(np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255))
    out = night.enhance(noisy)
    assert out.dtype == np.uint8 and out.shape == noisy.shape
    assert night.is_monochrome(out)
    assert np.percentile(out[..., 0], 99) - np.percentile(out[..., 0], 1) > 200  # was ~60 levels wide
    # The noise around the gradient shrank relative to the signal's range.
    ideal = np.tile(np.linspace(0, 255, 64), (64, 1))
    err_in = np.std(noisy[..., 0] - scene) / 40.0
    err_out = np.std(out[..., 0].astype(float) - ideal) / 255.0
    assert err_out < err_in


def test_a_blank_frame_is_not_blown_up_into_noise():
    frame = _mono(np.full((32, 32), 100) + np.random.default_rng(2).integers(0, 3, (32, 32)))
    out = night.enhance(frame)
    assert out[..., 0].max() - out[..., 0].min() < 8


@pytest.mark.parametrize("enhanced", [True, False])
def test_the_classifier_enhances_monochrome_inputs_only_when_asked(tiny_models, enhanced):
    clf = Classifier(tiny_models["tiny_float"], night=enhanced)
    frame = make_scene("dog", np.random.default_rng(0))
    clf.classify_frame(frame)
    assert clf.night_frame is False  # colour
    scores = clf.classify_frame(_flat_night(frame, offset=80.0))
    assert clf.night_frame is enhanced
    assert scores.shape == (len(SCENE_LABELS),)


def test_enhanced_and_plain_scores_differ_on_a_flat_night_frame(tiny_models):
    frame = make_scene("dog", np.random.default_rng(0))
    flat = _flat_night(frame, 0.3, 90.0)
    on = Classifier(tiny_models["tiny_float"], night=True).classify_frame(flat)
    off = Classifier(tiny_models["tiny_float"], night=False).classify_frame(flat)
    assert not np.allclose(on, off)


def test_classify_says_when_it_enhanced_a_night_image(tiny_models, tmp_path):
    frame = make_scene("dog", np.random.default_rng(0))
    flat = _flat_night(frame)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), flat)
    on = CliRunner().invoke(main, ["classify", str(tiny_models["tiny_float"]), str(path)])
    off = CliRunner().invoke(main, ["classify", "--no-night-enhance", str(tiny_models["tiny_float"]), str(path)])
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    assert "night-enhanced" in on.output
    assert "night-enhanced" not in off.output


@pytest.mark.parametrize("enhanced, said", [(True, "night frames enhanced"), (False, "night frames as they come")])
def test_the_door_passes_the_setting_to_its_classifier_and_says_so(tiny_models, tmp_path, enhanced, said):
    frames = write_frames(tmp_path / "porch", timeline(("background", 3), ("dog", 4)), seed=1)
    cfg = config.load_config(None, {"model": str(tiny_models["tiny_int8"]), "source": str(frames), "allow": ("dog",),
                                    "door": "mock", "events": str(tmp_path / "events.jsonl"),
                                    "night_enhance": enhanced})
    run_door(cfg)
    start = read_events(tmp_path / "events.jsonl")[0]
    assert start["event"] == "start" and said in start["reason"]


def test_check_config_says_whether_night_frames_are_enhanced(tiny_models, tmp_path):
    args = ["run", "--model", str(tiny_models["tiny_int8"]), "--source", str(tmp_path), "--allow", "dog", "--check-config"]
    on = CliRunner().invoke(main, args)
    off = CliRunner().invoke(main, [*args, "--no-night-enhance"])
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    assert "night frames enhanced" in on.output and "night frames as they come" in off.output


def test_enrolment_and_the_door_embed_a_night_frame_alike(openset_run):
    bgr = closeup("dog", np.random.default_rng(4))
    flat = _flat_night(bgr)
    classifier = Classifier(openset_run["model"])
    classifier.classify_frame(flat)
    assert classifier.night_frame
    enhanced = Embedder(openset_run["embedder"]).embed_image(flat)
    plain = Embedder(openset_run["embedder"], night=False).embed_image(flat)
    assert float(enhanced @ classifier.embedding()) > 0.99  # the door's night frame and an enrolled one: alike
    assert float(enhanced @ plain) < float(enhanced @ classifier.embedding())
