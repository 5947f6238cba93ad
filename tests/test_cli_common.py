"""One command-line convention for tl-train, tl-convert, tl-device and tl-bench: -h, exit codes, logging, errors."""

import logging
import types

import click
import pytest
from click.testing import CliRunner

from tl.device.cli import common
from tl.device.cli.tl_bench import main as bench_main
from tl.device.cli.tl_device import main as device_main
from tl.device.errors import ConfigError


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.mark.parametrize("command, args", [
    (device_main, []), (device_main, ["run"]), (device_main, ["check-config"]), (device_main, ["classify"]),
    (device_main, ["enroll"]), (bench_main, []),
])
def test_every_device_command_takes_h_and_help_and_documents_its_exit_codes(command, args):
    for flag in ("-h", "--help"):
        result = invoke(command, *args, flag)
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output and "Exit codes: 0 ok; 1 a bug" in result.output


def test_workstation_commands_follow_the_same_convention(tmp_path, monkeypatch):
    from tl.convert import cli as convert_cli
    from tl.train.cli import main as train_main

    for command in (train_main, convert_cli.main):
        for flag in ("-h", "--help"):
            result = invoke(command, flag)
            assert result.exit_code == 0 and "Exit codes: 0 ok; 1 a bug" in result.output
    assert "3 int8 accuracy dropped more than --max-drop" in " ".join(invoke(convert_cli.main, "-h").output.split())
    result = invoke(convert_cli.main, tmp_path / "nope")
    assert result.exit_code == 2 and result.output.startswith("tl-convert: error: ")
    # A failed check is 3: the files are written, the accuracy drop is not acceptable.
    monkeypatch.setattr(convert_cli, "open_source", lambda *a: types.SimpleNamespace(out_dir=tmp_path))
    monkeypatch.setattr(convert_cli.pipeline, "run", lambda *a, **k: types.SimpleNamespace(
        results=[], json_path=tmp_path / "convert.json", drop_message="int8 is 5.0 points below float32"))
    monkeypatch.setattr(convert_cli, "format_table", lambda results: "table")
    result = invoke(convert_cli.main, tmp_path)
    assert result.exit_code == 3 and "tl-convert: error: int8 is 5.0 points below float32" in result.output


def test_train_bad_input_is_exit_2_with_the_prefix(tmp_path):
    from tl.train.cli import main as train_main

    result = invoke(train_main, tmp_path, "--out", tmp_path / "run", "--dropout", "2")
    assert result.exit_code == 2 and "tl-train: error: --dropout 2.0 must be in [0, 1)" in result.output


def test_device_and_bench_bad_input_is_exit_2_with_the_prefix(tmp_path):
    result = invoke(device_main, "run", "--source", "0", "--allow", "dog")
    assert result.exit_code == 2 and result.output.startswith("tl-device: error: no model given")
    result = invoke(device_main, "run", "--fps", "fast")
    assert result.exit_code == 2 and "tl-device: error: command line: --fps fast: expected a number" in result.output
    result = invoke(bench_main, tmp_path / "missing.tflite", "--runs", "1", "--warmup", "0")
    assert result.exit_code == 2 and "tl-bench: error: no model could be measured" in result.output
    result = invoke(device_main, "run", "--no-such-option")
    assert result.exit_code == 2  # click's usage errors are bad input too


@click.command("tl-demo")
@click.argument("what")
@common.exits_on_error
def demo(what):
    """A command that fails the way it is told to."""
    if what == "config":
        raise ConfigError("threshold = 2: must be within 0..1")
    if what == "bug":
        raise RuntimeError("oops")
    if what == "check":
        common.fail("the check failed", common.EXIT_CHECK)
    if what == "interrupt":
        raise KeyboardInterrupt
    click.echo("fine")


@pytest.mark.parametrize("what, code, text", [
    ("ok", 0, "fine"),
    ("bug", 1, "tl-demo: error: RuntimeError: oops (a bug in tl-edge: please report it"),
    ("config", 2, "tl-demo: error: threshold = 2: must be within 0..1"),
    ("check", 3, "tl-demo: error: the check failed"),
    ("interrupt", 130, "tl-demo: interrupted"),
])
def test_exit_codes(what, code, text):
    result = invoke(demo, what)
    assert result.exit_code == code and text in result.output
    assert ("Traceback" in result.output) == (what == "bug")  # a traceback only for a bug


def test_logging_shows_tl_records_with_the_prefix_and_is_restored():
    log = logging.getLogger("tl.device.demo")
    tl = logging.getLogger("tl")
    before = (tl.level, tl.propagate, list(tl.handlers))

    @click.command("tl-demo")
    def noisy():
        with common.cli_logging("tl-demo", default=logging.INFO):
            log.debug("hidden")
            log.info("status: fine")
            log.warning("disk nearly full")

    result = invoke(noisy)
    assert "status: fine" in result.output and "tl-demo: warning: disk nearly full" in result.output
    assert "hidden" not in result.output
    assert (tl.level, tl.propagate, list(tl.handlers)) == before
    assert common.log_level(verbose=2) == logging.DEBUG and common.log_level(quiet=True) == logging.WARNING


def test_a_closed_pipe_ends_the_command_quietly():
    @click.command()
    @common.exits_on_error(prog="tl-demo")
    def writer():
        raise BrokenPipeError(32, "Broken pipe")

    result = CliRunner().invoke(writer, [])
    assert result.exit_code == 141
    assert "Traceback" not in result.output and "error" not in result.output
