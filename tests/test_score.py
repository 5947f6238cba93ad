"""tl-device score: the scorer on synthetic timelines, the pure replay and sweep, and the command on a generated scene."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.scenes import timeline, write_frames
from tl.device.door import score as sc
from tl.device.door.policy import make_policy_config
from tl.device.errors import ConfigError, DataError

LABELS = ["background", "dog", "raccoon"]
FPS = 10.0


def opened(*intervals):
    """Events of a door open over each (open, close) interval."""
    events = [{"ts": 0.0, "event": "start"}]
    for a, b in intervals:
        events += [{"ts": a, "event": "door_open"}, {"ts": b, "event": "door_close"}]
    return events


def outcomes(result):
    return [v["outcome"] for v in result["visits"]]


def test_allowed_visits_are_in_time_late_or_missed():
    visits = [sc.Visit(1.0, 4.0, "dog"), sc.Visit(10.0, 13.0, "dog"), sc.Visit(20.0, 23.0, "dog")]
    result = sc.score_events(opened((1.4, 6.0), (11.2, 15.0)), visits, ["dog"])
    assert outcomes(result) == ["in_time", "late", "missed"]
    assert [v.get("delay_s") for v in result["visits"]] == [0.4, 1.2, None]
    assert result["visits"][1]["late_s"] == pytest.approx(0.7)
    assert result["summary"]["in_time"] == 1 and result["false_opens"] == 0


def test_a_door_already_open_when_the_dog_arrives_is_in_time():
    result = sc.score_events(opened((1.0, 12.0)), [sc.Visit(1.0, 3.0, "dog"), sc.Visit(5.0, 8.0, "dog")], ["dog"])
    assert outcomes(result) == ["in_time", "in_time"] and result["visits"][1]["delay_s"] == 0.0


def test_other_visits_are_kept_out_or_let_in_and_empty_porch_opens_are_false():
    visits = [sc.Visit(1.0, 3.0, "raccoon"), sc.Visit(5.0, 8.0, "cat"), sc.Visit(12.0, 14.0, "dog")]
    events = opened((5.5, 6.0), (9.0, 10.0), (20.0, 21.0)) + [{"ts": 1.3, "event": "denied"}]
    events.sort(key=lambda e: e["ts"])
    result = sc.score_events(events, visits, ["dog"], frames=100, classified=40)
    assert outcomes(result) == ["kept_out", "let_in", "missed"]
    assert result["visits"][1]["opened_s"] == 5.5 and result["visits"][0]["denied"] == 1
    assert result["false_opens"] == 2 and result["false_open_s"] == [9.0, 20.0]
    assert result["lockouts"] == 1 and result["classified_share"] == 0.4
    assert result["summary"] == {"in_time": 0, "late": 0, "missed": 1, "kept_out": 1, "let_in": 1,
                                 "allowed_visits": 1, "other_visits": 2}


def test_in_time_is_an_option():
    visits = [sc.Visit(1.0, 4.0, "dog")]
    assert outcomes(sc.score_events(opened((1.8, 3.0)), visits, ["dog"], in_time=1.0)) == ["in_time"]
    assert outcomes(sc.score_events(opened((1.8, 3.0)), visits, ["dog"], in_time=0.5)) == ["late"]


def test_truth_file_is_read_and_checked(tmp_path):
    good = tmp_path / "visits.csv"
    good.write_text("start_s,end_s,label\n7.1,9.6,raccoon\n2.1, 4.6, dog\n\n")
    assert sc.read_truth(good) == [sc.Visit(2.1, 4.6, "dog"), sc.Visit(7.1, 9.6, "raccoon")]
    for text, message in (("start,end,label\n1,2,dog\n", "header"), ("start_s,end_s,label\n1,x,dog\n", "line 2"),
                          ("start_s,end_s,label\n3,2,dog\n", "start_s < end_s"), ("", "header")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(DataError, match=message):
            sc.read_truth(bad)
    with pytest.raises(DataError, match="cannot read"):
        sc.read_truth(tmp_path / "missing.csv")


def scores(kind, value=0.95):
    out = np.full(len(LABELS), (1 - value) / (len(LABELS) - 1), np.float32)
    out[LABELS.index(kind)] = value
    return out


def records(kinds, moving=None):
    return [sc.FrameRecord(i / FPS, scores(k), None, None if moving is None else moving[i]) for i, k in enumerate(kinds)]


def test_replay_runs_the_pure_policy_and_scores_it():
    kinds = timeline(("background", 10), ("dog", 20), ("background", 30), ("raccoon", 10), ("background", 10))
    cfg = make_policy_config(LABELS, ["dog"], open_seconds=1.0)
    events, classified = sc.replay(records(kinds), cfg)
    assert [(e["ts"], e["event"]) for e in events] == [(1.2, "door_open"), (3.9, "door_close"), (6.0, "denied")]
    result = sc.score_events(events, [sc.Visit(1.0, 3.0, "dog"), sc.Visit(6.0, 7.0, "raccoon")], ["dog"])
    assert outcomes(result) == ["in_time", "kept_out"] and classified == len(kinds)


def test_replay_with_a_gate_classifies_moving_frames_heartbeats_and_the_open_door():
    kinds = timeline(("background", 30), ("dog", 10), ("background", 40))
    moving = [i == 0 or 30 <= i < 40 for i in range(len(kinds))]
    cfg = make_policy_config(LABELS, ["dog"], open_seconds=1.0)
    events, classified = sc.replay(records(kinds, moving), cfg, heartbeat_seconds=2.0)
    assert [(e["ts"], e["event"]) for e in events] == [(3.2, "door_open"), (4.9, "door_close")]
    # first + 1 heartbeat (2.0 s) + 10 moving + 10 while open after the dog + heartbeat at 6.9 s
    assert classified == 1 + 1 + 10 + 10 + 1
    # Not watching the open door: gated frames still close it on time; heartbeats at 5.9 and 7.9 s.
    again, unwatched = sc.replay(records(kinds, moving), cfg, heartbeat_seconds=2.0, watch_open=False)
    assert again == events and unwatched == 1 + 1 + 10 + 2


def test_replay_needs_the_scores_of_frames_it_classifies():
    cfg = make_policy_config(LABELS, ["dog"])
    with pytest.raises(DataError, match="not classified"):
        sc.replay([sc.FrameRecord(0.0, None, None, None)], cfg)


def test_sweep_specs_expand_to_every_combination():
    settings = sc.parse_sweep(["threshold=0.3:0.5:0.1", "votes=2/4,3/5"])
    assert settings == [{"threshold": t, "votes": v} for t in (0.3, 0.4, 0.5) for v in ((2, 4), (3, 5))]
    assert sc.parse_sweep(["threshold=0.5,0.8"]) == [{"threshold": 0.5}, {"threshold": 0.8}]
    assert sc.parse_sweep([]) == []
    assert sc.parse_sweep(["lockout=2,30"]) == [{"lockout": 2.0}, {"lockout": 30.0}]
    for bad in ("speed=1", "threshold=0.3:0.9:0", "threshold=2", "votes=4/3", "votes=3-5", "threshold"):
        with pytest.raises(ConfigError, match="--sweep"):
            sc.parse_sweep([bad])


def test_sweep_table_trades_dogs_let_in_against_false_opens():
    # Dog frames score 0.6 (only a low threshold lets them in); the empty porch flickers "dog" at 0.55 every 3rd frame.
    kinds = [scores("background")] * 10 + [scores("dog", 0.6)] * 20 + [scores("background")] * 30
    kinds += [scores("dog", 0.55) if i % 3 == 0 else scores("background") for i in range(9)] + [scores("background")] * 10
    recs = [sc.FrameRecord(i / FPS, s, None, None) for i, s in enumerate(kinds)]
    cfg = make_policy_config(LABELS, ["dog"], open_seconds=1.0)
    visits = [sc.Visit(1.0, 3.0, "dog")]
    rows = sc.sweep(recs, cfg, sc.parse_sweep(["threshold=0.5,0.58,0.8", "votes=2/4,3/5"]), visits, ["dog"])
    table = {(r["threshold"], r["votes"]): (r["allowed_in_time"], r["false_opens"]) for r in rows}
    assert table[(0.5, "2/4")] == (1, 1)  # lets the dog in, and opens for the flicker
    assert table[(0.5, "3/5")] == (1, 0)  # the flicker never wins 3 of 5
    assert table[(0.58, "2/4")] == (1, 0)
    assert table[(0.8, "3/5")] == (0, 0)
    assert len(rows) == 6 and [r["default"] for r in rows] == [False] * 5 + [True]  # the grid holds the default
    assert next(r for r in rows if r["default"])["threshold"] == 0.8
    lines = sc.sweep_lines(rows)
    assert len(lines) == 1 + len(rows) + 1 and lines[-1].startswith("* the settings in force")
    marked = [line for line in lines[1:-1] if line.startswith("*")]
    assert len(marked) == 1 and "0.80" in marked[0] and "3/5" in marked[0]


def test_sweep_threshold_moves_the_allowed_classes_and_deny_the_locking_ones():
    cfg = make_policy_config(LABELS, ["dog"], thresholds={"dog": 0.7})
    dog, others = LABELS.index("dog"), [i for i in cfg.deny]
    moved = sc.configure(cfg, {"threshold": 0.5})
    assert moved.thresholds[dog] == 0.5 and all(moved.thresholds[i] == cfg.thresholds[i] for i in others)
    locked = sc.configure(cfg, {"deny": 0.99})
    assert locked.thresholds[dog] == 0.7 and all(locked.thresholds[i] == 0.99 for i in others)
    # A raccoon frame at 0.9 locks the door at deny 0.8, not at 0.99: the dog after it gets in on time.
    kinds = [scores("raccoon", 0.9)] + [scores("dog", 0.9)] * 10 + [scores("background")] * 10
    recs = [sc.FrameRecord(i / FPS, s, None, None) for i, s in enumerate(kinds)]
    rows = sc.sweep(recs, cfg, sc.parse_sweep(["deny=0.8,0.99"]), [sc.Visit(0.0, 1.1, "dog")], ["dog"], in_time=0.5)
    by_deny = {r["deny"]: r for r in rows}
    assert by_deny[0.99]["allowed_in_time"] == 1 and by_deny[0.99]["lockouts"] == 0
    assert by_deny[0.8]["lockouts"] == 1
    assert " deny " in sc.sweep_lines(rows)[0]


def test_sweep_adds_the_settings_in_force_when_the_grid_lacks_them():
    recs = records(["background"] * 5)
    rows = sc.sweep(recs, make_policy_config(LABELS, ["dog"], threshold=0.77), sc.parse_sweep(["threshold=0.5"]),
                    [], ["dog"])
    assert [(r["threshold"], r["default"]) for r in rows] == [(0.77, True), (0.5, False)]


# --- the command on a generated scene ----------------------------------------------------------------

SCENE = timeline(("background", 20), ("dog", 15), ("background", 25), ("raccoon", 10), ("background", 30))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scored")
    frames = write_frames(root / "frames", SCENE, seed=21)
    truth = root / "visits.csv"
    truth.write_text("start_s,end_s,label\n2.0,3.5,dog\n6.0,7.0,raccoon\n")
    return frames, truth


def run_score(tiny_models, scene, tmp_path, *extra):
    from tl.device.cli.tl_device import main

    frames, truth = scene
    out = tmp_path / "score.json"
    args = ["score", str(frames), "--truth", str(truth), "--model", str(tiny_models["tiny_int8"]), "--allow", "dog",
            "--threshold", "0.7", "--open-seconds", "1", "--lockout-seconds", "2", "--json", str(out), *extra]
    got = CliRunner().invoke(main, args)
    assert got.exit_code == 0, got.output
    return got.output, json.loads(out.read_text())


def test_score_command_on_a_generated_scene(tiny_models, scene, tmp_path):
    output, result = run_score(tiny_models, scene, tmp_path)
    assert outcomes(result) == ["in_time", "kept_out"]
    assert result["visits"][0]["delay_s"] <= 0.5 and result["visits"][1]["denied"] == 1
    assert result["false_opens"] == 0 and result["lockouts"] == 1
    assert result["frames"] == len(SCENE) and result["classified_share"] == 1.0
    assert "in_time" in output and "allowed visits: 1 of 1 in time" in output


def test_score_command_sweep_and_motion(tiny_models, scene, tmp_path):
    output, result = run_score(tiny_models, scene, tmp_path, "--motion", "--sweep", "threshold=0.5,0.7,0.9",
                               "--sweep", "votes=2/4,3/5", "--plot", str(tmp_path / "sweep.png"))
    assert outcomes(result) == ["in_time", "kept_out"] and result["motion"] is True
    assert result["classified_share"] < 0.6  # the empty porch is gated
    rows = result["sweep"]
    assert len(rows) == 6 and sum(r["default"] for r in rows) == 1
    default = next(r for r in rows if r["default"])
    assert (default["threshold"], default["votes"], default["allowed_in_time"]) == (0.7, "3/5", 1)
    assert default["classified_share"] == result["classified_share"]  # the replay agrees with the loop
    assert "* the settings in force" in output
    assert (tmp_path / "sweep.png").is_file() or "matplotlib is not installed" in output


def test_score_command_refuses_bad_input(tiny_models, scene, tmp_path):
    from tl.device.cli.tl_device import main

    frames, truth = scene
    base = ["score", str(frames), "--model", str(tiny_models["tiny_int8"]), "--allow", "dog"]
    bad = tmp_path / "bad.csv"
    bad.write_text("when,who\n1,dog\n")
    for extra, message in ((["--truth", str(bad)], "header"), (["--truth", str(truth), "--sweep", "speed=2"], "--sweep"),
                           (["--truth", str(truth), "--plot", "x.png"], "give --sweep")):
        got = CliRunner().invoke(main, base + extra)
        assert got.exit_code == 2 and message in got.output, got.output
