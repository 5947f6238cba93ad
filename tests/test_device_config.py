"""The door's TOML config: strict keys, typed values, CLI overrides, check-config, the shipped example."""

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from tl.device.cli.tl_device import main
from tl.device.door import config
from tl.device.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "device" / "deploy" / "door.toml"


def write(tmp_path, text, name="door.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_match_the_issue():
    cfg = config.RunConfig()
    assert (cfg.fps, cfg.threshold, cfg.votes, cfg.open_seconds, cfg.lockout_seconds) == (10.0, 0.8, (3, 5), 10.0, 30.0)
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
    for field in dataclasses.fields(config.RunConfig):
        flag = field.metadata["click"].get("flag", "--" + field.name.replace("_", "-")).split("/")[0]
        assert (flag in help_text) == field.metadata["cli"], field.name  # secrets are TOML/environment only
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
    good = write(tmp_path, 'model = "missing.tflite"\nsource = "0"\nallow = ["dog"]')
    result = runner.invoke(main, ["check-config", str(good)])
    assert result.exit_code == 0 and "options OK" in result.output
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


