"""The door's TOML config: strict keys, typed values, CLI overrides, check-config, the shipped example."""

import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tl.device.cli.tl_device import main
from tl.device.door import config
from tl.device.errors import ConfigError, OutputError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "device" / "deploy" / "door.toml"


def write(tmp_path, text, name="door.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_match_the_issue():
    cfg = config.RunConfig()
    # No threshold: the model's operating points apply (else 0.8); a 2 s lockout (benchmarks/door_scenes.md).
    assert (cfg.fps, cfg.threshold, cfg.votes, cfg.open_seconds, cfg.lockout_seconds) == (10.0, None, (3, 5), 10.0, 2.0)
    assert cfg.door == "none" and cfg.pin == 17 and cfg.realtime is None


def test_toml_values_are_parsed_and_paths_are_relative_to_the_file(tmp_path):
    path = write(tmp_path, '''
model = "m.tflite"
source = "frames"
allow = ["dog"]
deny = "raccoon"
votes = [2, 4]
roi = "10,20,300,200"
capture = [320, 240]
fps = 5
realtime = true
pin = "GPIO27"
events = "/abs/events.jsonl"
[thresholds]
raccoon = 0.5
''')
    cfg = config.load_config(path)
    assert cfg.model == str(tmp_path / "m.tflite")
    assert cfg.source == str(tmp_path / "frames")
    assert cfg.events == "/abs/events.jsonl"
    assert (cfg.allow, cfg.deny, cfg.votes, cfg.roi, cfg.capture) == (("dog",), ("raccoon",), (2, 4), (10, 20, 300, 200), (320, 240))
    assert cfg.fps == 5.0 and cfg.realtime is True and cfg.pin == "GPIO27"
    assert cfg.thresholds == {"raccoon": 0.5}


def test_camera_sources_are_not_made_relative(tmp_path):
    for source in ("picamera", "0", "rtsp://cam/stream"):
        cfg = config.load_config(write(tmp_path, f'source = "{source}"'))
        assert cfg.source == source


def test_cli_overrides_the_file(tmp_path):
    path = write(tmp_path, 'threshold = 0.9\nallow = ["dog"]\nvotes = "3/5"')
    cfg = config.load_config(path, {"threshold": 0.7, "votes": "2/3", "allow": None})
    assert cfg.threshold == 0.7 and cfg.votes == (2, 3) and cfg.allow == ("dog",)


def test_unknown_key_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'open_second'; did you mean 'open_seconds'"):
        config.load_config(write(tmp_path, "open_second = 5"))
    with pytest.raises(ConfigError, match="unknown key 'xyzzy'; known keys: model"):
        config.load_config(write(tmp_path, "xyzzy = 'red'"))


@pytest.mark.parametrize("text, message", [
    ("threshold = 1.2", "within 0..1"),
    ("threshold = 'high'", "expected a number"),
    ("votes = '5/3'", "1 <= K <= N"),
    ("votes = 'three of five'", "2 whole numbers"),
    ("fps = 0", "more than 0"),
    ("open_seconds = -1", "0 or more"),
    ("roi = '1,2,3'", "4 whole numbers"),
    ("roi = [0, 0, 0, 10]", "w, h more than 0"),
    ("door = 'trapdoor'", "one of relay, servo, mock, none"),
    ("active_low = 'yes'", "true or false"),
    ("snapshot_keep = 1.5", "whole number"),
    ("allow = [1]", "list of class names"),
    ("open_angle = 200", "-90..90"),
    ("[thresholds]\ncat = 2", "within 0..1"),
    ("threshold = ", "not valid TOML"),
])
def test_invalid_values_are_refused_with_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        config.load_config(write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: cannot read"):
        config.load_config(tmp_path / "nope.toml")


def test_class_thresholds_from_the_command_line():
    assert config.parse_options({"thresholds": ("raccoon=0.5", "a=b=0.25")})["thresholds"] == {"raccoon": 0.5, "a=b": 0.25}
    with pytest.raises(ConfigError, match="CLASS=VALUE"):
        config.parse_options({"thresholds": ("raccoon",)})


def test_every_option_has_a_toml_twin_and_a_cli_flag():
    help_text = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for name, field in config.FIELDS.items():
        assert field.description, name  # help on every field
        flag = config.flag_of(name)
        assert (flag in help_text) == field.json_schema_extra["cli"], name  # secrets are TOML/environment only
    for flag in ("--config", "--check-config"):
        assert flag in help_text


def test_shipped_example_is_valid_and_mentions_every_key():
    cfg = config.load_config(EXAMPLE)
    assert cfg.allow == ("dog",) and cfg.door == "relay"
    text = EXAMPLE.read_text()
    for name in config.FIELDS:
        assert name in text, f"door.toml does not mention {name}"
    unit = (REPO / "device" / "deploy" / "tl-device.service").read_text()
    assert "Restart=on-failure" in unit and "WatchdogSec=" in unit and "Type=notify" in unit


def test_check_config_command(tmp_path):
    runner = CliRunner()
    missing = write(tmp_path, 'model = "missing.tflite"\nsource = "0"\nallow = ["dog"]')
    result = runner.invoke(main, ["check-config", str(missing)])  # run would refuse it: so does check-config
    assert result.exit_code == 2 and f"{missing}: model = '{tmp_path / 'missing.tflite'}': no such file" in result.output
    bad = write(tmp_path, 'model = "m.tflite"\nsource = "0"\nallow = ["dog"]\nvotse = "3/5"', name="bad.toml")
    result = runner.invoke(main, ["check-config", str(bad)])
    assert result.exit_code == 2 and "unknown key 'votse'" in result.output
    no_allow = write(tmp_path, 'model = "m.tflite"\nsource = "0"', name="no_allow.toml")
    result = runner.invoke(main, ["run", "--config", str(no_allow), "--check-config"])
    assert result.exit_code == 2 and "--allow" in result.output


def test_check_config_checks_classes_against_the_model(tmp_path, tiny_models):
    runner = CliRunner()
    path = write(tmp_path, f'model = "{tiny_models["tiny_int8"]}"\nsource = "0"\nallow = ["dog"]')
    result = runner.invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "allow dog; deny raccoon; ignore background" in result.output
    result = runner.invoke(main, ["run", "--config", str(path), "--allow", "wolf", "--check-config"])
    assert result.exit_code == 2 and "background, dog, raccoon" in result.output


# --- check-config and run agree: what run refuses, check-config refuses, naming the file and the key ---


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write into (root ignores modes, so root gets /sys, which refuses even root)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        yield Path("/sys")
        return
    pytest.skip("no read-only folder to test with")


def door_file(tmp_path, model, extra, name="door.toml"):
    return write(tmp_path, f'model = "{model}"\nsource = "0"\nallow = ["dog"]\n{extra}\n', name=name)


@pytest.mark.parametrize("extra, key, message", [
    ("openset_quantile = 5", "openset_quantile = 5", "within 0.9..1"),
    ("identity_threshold = 3", "identity_threshold = 3", "within -1..1"),
    ('source = "porch.mp4"', "source = ", "no such file or folder"),
])
def test_check_config_refuses_what_run_refuses(tmp_path, tiny_models, extra, key, message):
    text = door_file(tmp_path, tiny_models["tiny_int8"], "").read_text()
    if extra.startswith("source"):
        text = text.replace('source = "0"\n', "")
    path = write(tmp_path, text + extra + "\n")
    runner = CliRunner()
    checked = runner.invoke(main, ["check-config", str(path)])
    assert checked.exit_code == 2, checked.output
    assert f"{path}: {key}" in checked.output and message in checked.output
    assert checked.output.startswith("tl-device: error: ")
    ran = runner.invoke(main, ["run", "--config", str(path)])  # the same words, before any camera opens
    assert ran.exit_code == 2 and checked.output.splitlines()[-1] in ran.output


def test_events_in_a_read_only_folder_is_refused_by_check_config(tmp_path, tiny_models, read_only_folder):
    events = read_only_folder / "door" / "events.jsonl"
    path = door_file(tmp_path, tiny_models["tiny_int8"], f'events = "{events}"')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2 and f"{path}: events = '{events}'" in result.output and "not writable" in result.output
    assert not (read_only_folder / "door").exists()  # checking makes nothing
    snaps = door_file(tmp_path, tiny_models["tiny_int8"], f'snapshots = "{read_only_folder}"', name="snaps.toml")
    result = CliRunner().invoke(main, ["check-config", str(snaps)])
    assert result.exit_code == 2 and "snapshots = " in result.output and "not writable" in result.output


def test_events_under_a_file_or_naming_a_folder_is_refused(tmp_path, tiny_models):
    (tmp_path / "file").write_text("x")
    cfg = config.load_config(None, {"model": str(tiny_models["tiny_int8"]), "source": "0", "allow": "dog",
                                    "events": str(tmp_path / "file" / "events.jsonl")})
    with pytest.raises(OutputError, match=r"command line: --events .*file is not a folder"):
        config.require_run(cfg)
    cfg = config.build_config(vars(cfg), {"events": str(tmp_path)})
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        config.require_run(cfg)


def test_a_good_config_with_outputs_to_make_is_ok_and_makes_nothing(tmp_path, tiny_models):
    frames = tmp_path / "frames"
    frames.mkdir()
    path = write(tmp_path, f'model = "{tiny_models["tiny_int8"]}"\nsource = "frames"\nallow = ["dog"]\n'
                           'events = "logs/events.jsonl"\nsnapshots = "logs/snaps"\nhttp = 8080\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: OK: allow dog" in result.output and not (tmp_path / "logs").exists()


def test_unknown_class_names_the_key_and_where_it_came_from(tmp_path, tiny_models):
    path = door_file(tmp_path, tiny_models["tiny_int8"], '[thresholds]\nwolf = 0.5')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2 and f"{path}: thresholds = {{'wolf': 0.5}}: model tiny_int8.tflite has no class " \
                                      "'wolf'; its classes are: background, dog, raccoon" in result.output
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--deny", "fox", "--check-config"])
    assert result.exit_code == 2 and "command line: --deny fox: model" in result.output


def test_openset_asked_of_a_model_without_statistics(tmp_path, tiny_models):
    path = door_file(tmp_path, tiny_models["tiny_int8"], "openset = true")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2 and f"{path}: openset = True: model" in result.output
    assert "no open-set statistics" in result.output


def test_keys_that_go_together(tmp_path):
    with pytest.raises(ConfigError, match=r"door.toml: require_identity = \('rex',\): needs a gallery"):
        config.load_config(write(tmp_path, 'require_identity = ["rex"]'))
    with pytest.raises(ConfigError, match="--deny dog: class 'dog' is also in allow; give it one role"):
        config.load_config(write(tmp_path, 'allow = ["dog"]'), {"deny": ("dog",)})
    path = write(tmp_path, f'gallery = "{tmp_path / "g.npz"}"')
    (tmp_path / "m.tflite").write_bytes(b"")
    cfg = config.load_config(path, {"model": str(tmp_path / "m.tflite"), "source": "0", "allow": ("dog",), "require_identity": "rex"})
    with pytest.raises(ConfigError, match=f"{path}: gallery = .*g.npz': no such file; make one with tl-device enroll"):
        config.require_run(cfg)


# --- flags and TOML meet in one place ------------------------------------------------------------------------


def test_flags_win_and_each_value_remembers_where_it_came_from(tmp_path):
    path = write(tmp_path, 'threshold = 0.9\nfps = 5\nallow = ["dog"]\nvotes = [2, 4]')
    cfg = config.load_config(path, {"threshold": "0.6", "allow": ("cat", "dog")})
    assert (cfg.threshold, cfg.fps, cfg.allow, cfg.votes) == (0.6, 5.0, ("cat", "dog"), (2, 4))
    assert cfg.describe("threshold") == "command line: --threshold 0.6"
    assert cfg.describe("fps") == f"{path}: fps = 5.0"
    assert cfg.describe("door") == "default: door = 'none'"
    assert cfg.settings.policy.votes == (2, 4) and cfg.settings.door.pin == 17  # the per-concern models
    with pytest.raises(AttributeError, match="read-only"):
        cfg.fps = 1


def test_command_line_strings_are_checked_by_the_same_rules(tmp_path):
    with pytest.raises(ConfigError, match="command line: --fps abc: expected a number"):
        config.load_config(None, {"fps": "abc"})
    with pytest.raises(ConfigError, match=r"command line: --threads 0: must be 1 or more"):
        config.load_config(None, {"threads": "0"})
    with pytest.raises(ConfigError, match=r"command line: --http 99999: expected HOST:PORT with a port within 1..65535"):
        config.load_config(None, {"http": "99999"})
    # a TOML string is not a number, as it never was
    with pytest.raises(ConfigError, match=f"{tmp_path / 'door.toml'}: fps = '5': expected a number"):
        config.load_config(write(tmp_path, 'fps = "5"'))


def test_run_flags_reach_the_config(tmp_path, tiny_models):
    path = door_file(tmp_path, tiny_models["tiny_int8"], "threshold = 0.9\nvotes = \"3/5\"")
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--threshold", "0.5", "--votes", "2/3",
                                       "--deny", "raccoon", "--check-config"])
    assert result.exit_code == 0, result.output
    assert "votes 2/3; thresholds background 0.50, dog 0.50, raccoon 0.50 (0.50 from command line" in result.output and "deny raccoon" in result.output
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--threshold", "2", "--check-config"])
    assert result.exit_code == 2 and "command line: --threshold 2: must be within 0..1" in result.output


def _cfg(**values):
    return config.load_config(None, {"model": "m.tflite", "source": ".", "allow": ("dog",), **values})


def test_the_models_operating_points_apply_where_the_config_sets_no_threshold():
    labels, points = ("cat", "dog", "other"), {"cat": 0.5, "dog": 0.71, "other": 0.5}
    base, per_class, source = config.thresholds_in_force(_cfg(), labels, points)
    # The allowed class takes its operating point; the classes that lock the door need a near-certain
    # frame (a dog seen badly for a frame, or an empty porch, must not reach a low "cat" threshold).
    assert per_class == {"cat": 0.99, "dog": 0.71, "other": 0.99}
    assert "operating point for dog" in source and "dog 0.71" in source and "cat 0.99" in source
    assert config.policy_config(_cfg(), labels, points).thresholds == (0.99, 0.71, 0.99)


def test_the_config_wins_over_the_operating_points():
    labels, points = ("cat", "dog", "other"), {"cat": 0.5, "dog": 0.71, "other": 0.5}
    assert config.policy_config(_cfg(threshold=0.9), labels, points).thresholds == (0.9, 0.9, 0.9)
    pc = config.policy_config(_cfg(thresholds={"dog": 0.6, "cat": 0.9}), labels, points)
    assert pc.thresholds == (0.9, 0.6, 0.99)
    assert "[thresholds]" in config.thresholds_in_force(_cfg(thresholds={"dog": 0.6}), labels, points)[2]


def test_without_operating_points_the_fallback_is_said():
    base, per_class, source = config.thresholds_in_force(_cfg(), ("cat", "dog"), {})
    assert base == config.FALLBACK_THRESHOLD and per_class == {"cat": config.DENY_THRESHOLD}
    assert "no operating points" in source and "cat 0.99, dog 0.80" in source
