"""tl-device: classify images with a model, run the pet-door daemon, check a door config."""

import logging
import os
import signal
import sys

import click

from tl.device import __version__
from tl.device.cli.common import CONTEXT_SETTINGS, EXIT_INPUT, cli_logging, echo_error, exit_codes, exits_on_error
from tl.device.cli.enroll import enroll as enroll_command
from tl.device.cli.score import make_command as make_score_command
from tl.device.door import config, schema
from tl.device.errors import TLError


@click.group("tl-device", context_settings=CONTEXT_SETTINGS, epilog=exit_codes())
@click.option("-v", "--verbose", count=True, help="more logging (-vv: debug)")
@click.option("-q", "--quiet", is_flag=True, help="warnings and errors only")
@click.version_option(__version__, prog_name="tl-device")
@click.pass_context
def main(ctx, verbose, quiet):
    """Run tl-edge models on a device: classify images, or run the pet door."""
    # The daemon's log is its output (info by default); the other commands print what they found
    # and log warnings only, unless -v. journald stamps each line itself; in a terminal they carry the time.
    daemon = ctx.invoked_subcommand == "run"
    ctx.with_resource(cli_logging("tl-device", verbose, quiet, default=logging.INFO if daemon else logging.WARNING,
                                  timestamps=daemon and "JOURNAL_STREAM" not in os.environ))


@main.command(epilog=exit_codes())
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(1), help="classes shown per image")
@click.option("--labels", type=click.Path(dir_okay=False), help="labels file, for a model that carries none")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for the interpreter")
@click.option("--edgetpu/--no-edgetpu", default=None, help="use the Edge TPU (default: for *_edgetpu.tflite)")
@click.option("--night-enhance/--no-night-enhance", default=True, show_default=True,
              help="denoise and contrast-stretch monochrome (infrared night) images before the model")
@exits_on_error
def classify(model, images, top_k, labels, threads, edgetpu, night_enhance):
    """Print the top classes of each IMAGE and the invoke time: the quick check of a copied MODEL.

    The model is loaded once; one warm-up invoke on a blank image runs first, so the times shown
    are steady-state. Exit code 2 if the model or any image cannot be used.
    """
    # Imported here so that `tl-device --help` does not load OpenCV and the runtime.
    from tl.device.model.classifier import Classifier
    from tl.device.model.classifier import top_k as best
    from tl.device.model.image import load_image
    from tl.device.recognition.recognizer import openset_for

    classifier = Classifier(model, labels, threads=threads, edgetpu=edgetpu, night=night_enhance)
    classifier.warm_up()
    openset = openset_for(classifier)  # None when the model carries no open-set statistics
    failed = 0
    for path in images:
        try:
            rgb = load_image(path)
        except TLError as e:
            echo_error(str(e))
            failed += 1
            continue
        scores = classifier.classify_image(rgb)
        night = "night-enhanced, " if classifier.night_frame else ""
        click.echo(f"{path}  ({night}{classifier.invoke_ms:.1f} ms)")
        for c in best(scores, classifier.labels, top_k):
            click.echo(f"  {c.score:.3f}  {c.label}")
        if openset is not None:
            check = openset.check(scores, classifier.embedding())
            click.echo(f"  {'UNKNOWN' if check.unknown else 'known'}: {check.label} {openset.method} "
                       f"{check.value:.3f} ({'above' if check.value > check.limit else 'below'} {check.limit:.3f})")
    if failed:
        sys.exit(EXIT_INPUT)


def _config_options(func):
    """Adds one `run` option per config field (so every option has its TOML twin by construction).

    Values stay strings here: the config validates them, with the same rules as the TOML file's.
    """
    for name, field in reversed(list(schema.FIELDS.items())):
        extra = field.json_schema_extra
        if not extra["cli"]:
            continue  # TOML/environment only (secrets)
        flag = extra["flag"] or "--" + name.replace("_", "-")
        default = extra["show"] if extra["show"] is not None else field.get_default(call_default_factory=True)
        notes = [schema.bounds_text(field)]
        if default not in (None, (), {}) and "/" not in flag:
            notes.append(f"default: {default}")
        shown = "; ".join(n for n in notes if n)
        click_extra = {"multiple": True} if extra["multiple"] else {}
        click_extra["metavar"] = extra["metavar"] or _METAVARS.get(_base_type(field.annotation), "TEXT")
        if "/" in flag:
            click_extra["default"] = None
        help_text = field.description + (f" [{shown}]" if shown else "")
        func = click.option(flag, name, help=help_text, **click_extra)(func)
    return func


_METAVARS = {float: "NUMBER", int: "INTEGER"}


def _base_type(annotation):
    """float for `float` and `float | None`."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


RUN_EPILOG = f"""\b
Examples:
  tl-device run --config door.toml
  tl-device run --model model_int8.tflite --source porch.mp4 --allow dog --events events.jsonl
  tl-device check-config door.toml
{exit_codes()}
"""


@main.command(epilog=RUN_EPILOG)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file with any of these options")
@click.option("--check-config", is_flag=True, help="validate the options (and the model's classes) and exit")
@_config_options
@exits_on_error
def run(config_file, check_config, **options):
    """Run the pet door: camera (or replay) -> model -> door policy -> door, events and snapshots.

    Every option can also be set in a TOML file given with --config; options on the command line
    win. Before the camera opens, the same checks as check-config run: every range, the class
    names against the model's labels, a source that exists, writable events and snapshot folders.
    SIGINT/SIGTERM stop it with the door closed.
    """
    cli = {k: (v if v != () else None) for k, v in options.items()}
    cfg = config.load_config(config_file, cli)
    if check_config:
        click.echo(_checked(cfg, config_file or "command line"))
        return
    from tl.device.door.loop import StopRequest, run_door

    stop = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda n, _frame: stop.request(signal.Signals(n).name))
    from tl.device.observe.reporters import open_reporters

    run_door(cfg, stop, observers=open_reporters)


@main.command("check-config", epilog=exit_codes())
@click.argument("config_file", type=click.Path(dir_okay=False))
@exits_on_error
def check_config_command(config_file):
    """Validate a door TOML file exactly as `run` does before it opens the camera, and exit.

    Every key and range; the class names against the model's labels; a source file that exists
    (camera names excepted); model, labels and gallery files; writable events and snapshot
    folders. A problem is one line naming the file and the key, and exit code 2.
    """
    click.echo(_checked(config.load_config(config_file), config_file))


def _checked(cfg, where):
    from tl.device.model import night
    from tl.device.model.metadata import read_model_info

    pc = config.check_run(cfg)
    info = read_model_info(cfg.model, cfg.labels)
    thresholds = config.thresholds_in_force(cfg, info.labels, info.operating_points)[2]
    return (f"{where}: OK: allow {pc.names(pc.allow)}; deny {pc.names(pc.deny)}; ignore {pc.names(pc.ignore)}; "
            f"votes {pc.votes}/{pc.window}; {thresholds}; {night.describe(cfg.night_enhance)}; door {cfg.door}")


main.add_command(enroll_command)
main.add_command(make_score_command(_config_options))

if __name__ == "__main__":
    main()
