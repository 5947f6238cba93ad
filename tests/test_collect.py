"""Collecting a porch's own training photos: the Collector, the door loop offering it frames, the config."""

import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.scenes import timeline, write_frames
from tl.device.cli.tl_device import main
from tl.device.door import config
from tl.device.door.events import Collector, read_events
from tl.device.errors import OutputError


def frame(value=100, size=(48, 64)):
    img = np.zeros((*size, 3), np.uint8)
    img[:, : size[1] // 2] = value
    img[:, size[1] // 2 :] = (20, 200, 60)
    return img


def collected(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))


def test_saves_plain_photos_in_a_folder_per_label_at_most_every_interval(tmp_path):
    c = Collector(tmp_path / "c", every=1.0, keep=10)
    assert c.save(frame(), 0.0, 0, "dog", 0.91) is not None
    assert c.save(frame(), 0.5, 5, "dog", 0.93) is None  # too soon
    assert not c.due(0.99) and c.due(1.0)
    assert c.save(frame(), 1.2, 12, "cat", 0.6) is not None
    assert c.save(frame(), 0.1, 1, "fox fur/..", None) is not None  # time went back (a new replay): due again
    names = collected(tmp_path / "c")
    assert [n.split("/")[0] for n in names] == ["cat", "dog", "fox_fur_.."]  # one folder per label, names made safe
    assert names[0].endswith("-12-cat-0.60.jpg") and c.saved == 3
    photo = cv2.imread(str(tmp_path / "c" / names[1]))
    assert photo.shape == frame().shape
    assert np.abs(photo.astype(int) - frame().astype(int)).mean() < 3  # the frame itself, not annotated


def test_keeps_the_region_of_interest_only(tmp_path):
    img = frame()
    path = Collector(tmp_path).save(img, 0.0, 3, "dog", 0.9, roi=(32, 8, 30, 20))
    assert cv2.imread(str(path)).shape == (20, 30, 3)


def test_keeps_only_the_newest_across_labels_and_never_touches_other_files(tmp_path):
    mine = tmp_path / "dog" / "my-own-photo.jpg"
    mine.parent.mkdir()
    mine.write_bytes(b"not ours")
    c = Collector(tmp_path, every=0.1, keep=3)
    paths = [c.save(frame(i * 20), i * 1.0, i, ("dog", "cat")[i % 2], 0.9) for i in range(5)]
    left = [p for p in paths if p.exists()]
    assert left == paths[2:] and mine.exists()
    again = Collector(tmp_path, every=0.1, keep=2)  # a restart counts what is already there
    again.save(frame(), 10.0, 10, "other", 0.9)
    assert len(collected(tmp_path)) == 3  # 2 of ours + the user's own file
    assert mine.exists()


def test_a_failed_write_is_counted_not_raised(tmp_path, caplog):
    c = Collector(tmp_path / "c")
    (tmp_path / "c" / "dog").write_text("a file where the class folder should be")
    assert c.save(frame(), 0.0, 0, "dog", 0.9) is None
    assert c.failures == 1 and c.saved == 0
    assert "not written" in caplog.text


def test_an_unwritable_place_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="--collect"):
        Collector(tmp_path / "file" / "c")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_check_config_refuses_an_unwritable_collect_folder(tmp_path, tiny_models):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    values = {"model": str(tiny_models["tiny_int8"]), "source": str(tmp_path), "allow": ("dog",),
              "collect": str(locked / "c")}
    with pytest.raises(OutputError, match="collect"):
        config.require_run(config.load_config(None, values))


def test_check_config_refuses_a_collect_path_under_a_file(tmp_path, tiny_models):
    (tmp_path / "file").write_text("x")
    values = {"model": str(tiny_models["tiny_int8"]), "source": str(tmp_path), "allow": ("dog",),
              "collect": str(tmp_path / "file" / "c")}
    with pytest.raises(OutputError, match="--collect .*is not a folder; choose another place"):
        config.require_run(config.load_config(None, values))


def test_run_collects_visitors_by_guessed_class_and_skips_the_ignored_empty_porch(tiny_models, tmp_path):
    pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    from tl.device.door.loop import run_door

    frames = write_frames(tmp_path / "frames", timeline(("background", 6), ("dog", 8), ("background", 6),
                                                        ("raccoon", 8), ("background", 6)), seed=3)
    values = {"model": str(tiny_models["tiny_int8"]), "source": str(frames), "allow": ("dog",), "door": "mock",
              "threshold": 0.7, "events": str(tmp_path / "events.jsonl"), "collect": str(tmp_path / "porch"),
              "collect_seconds": 0.3, "openset": False}
    run_door(config.load_config(None, values), pin_factory=MockFactory())
    names = collected(tmp_path / "porch")
    folders = {n.split("/")[0] for n in names}
    assert {"dog", "raccoon"} <= folders and "background" not in folders  # background is ignored by default
    # 8 frames of each visitor at 10 fps, one photo per 0.3 s at most: 2-3 per visitor
    assert 4 <= len(names) <= 7, names
    stop = read_events(tmp_path / "events.jsonl")[-1]
    assert stop["event"] == "stop" and stop["collected"] == len(names)


def test_heartbeat_frames_of_a_still_porch_are_not_collected(tiny_models, tmp_path):
    pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    from tests.support.scenes import make_scene
    from tl.device.door.loop import run_door

    still = make_scene("background", np.random.default_rng(0))
    (tmp_path / "frames").mkdir()
    for i in range(30):  # 3 s of the same empty porch
        cv2.imwrite(str(tmp_path / "frames" / f"frame_{i:05d}.png"), still)
    values = {"model": str(tiny_models["tiny_int8"]), "source": str(tmp_path / "frames"), "allow": ("dog",),
              "ignore": (), "door": "mock", "events": str(tmp_path / "events.jsonl"), "motion": True,
              "heartbeat_seconds": 1.0, "collect": str(tmp_path / "porch"), "collect_seconds": 0.1, "openset": False}
    run_door(config.load_config(None, values), pin_factory=MockFactory())
    stop = read_events(tmp_path / "events.jsonl")[-1]
    assert stop["classified"] >= 3  # the first frame and two heartbeats were classified...
    assert len(collected(tmp_path / "porch")) == stop["collected"] == 1  # ...only the first was kept


def test_run_help_and_the_example_config_explain_collect():
    out = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--collect DIR" in out and "--collect-seconds" in out and "default: 1.0" in out
    assert "--collect-keep" in out and "default: 2000" in out
