"""tl-device: classify images with a model, run the pet-door daemon, check a door config."""

import logging
import signal
import sys
from pathlib import Path

import click

from tl.device import __version__
from tl.device.cli.common import exits_on_error
from tl.device.cli.enroll import enroll as enroll_command
from tl.device.cli.score import make_command as make_score_command
from tl.device.door import config
from tl.device.errors import TLError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="more logging (-vv: debug)")
@click.option("-q", "--quiet", is_flag=True, help="warnings and errors only")
@click.version_option(__version__, prog_name="tl-device")
def main(verbose, quiet):
    """Run tl-edge models on a device: classify images, or run the pet door."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(1), help="classes shown per image")
@click.option("--labels", type=click.Path(dir_okay=False), help="labels file, for a model that carries none")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for the interpreter")
@click.option("--edgetpu/--no-edgetpu", default=None, help="use the Edge TPU (default: for *_edgetpu.tflite)")
@exits_on_error
def classify(model, images, top_k, labels, threads, edgetpu):
    """Print the top classes of each IMAGE and the invoke time: the quick check of a copied MODEL.

    The model is loaded once; one warm-up invoke on a blank image runs first, so the times shown
    are steady-state. Exit code 2 if the model or any image cannot be used.
    """
    # Imported here so that `tl-device --help` does not load OpenCV and the runtime.
    from tl.device.model.classifier import Classifier
    from tl.device.model.classifier import top_k as best
    from tl.device.model.image import load_image
    from tl.device.recognition.recognizer import openset_for

    classifier = Classifier(model, labels, threads=threads, edgetpu=edgetpu)
    classifier.warm_up()
    openset = openset_for(classifier)  # None when the model carries no open-set statistics
    failed = 0
    for path in images:
        try:
            rgb = load_image(path)
        except TLError as e:
            click.echo(f"error: {e}", err=True)
            failed += 1
            continue
        scores = classifier.classify_image(rgb)
        click.echo(f"{path}  ({classifier.invoke_ms:.1f} ms)")
        for c in best(scores, classifier.labels, top_k):
            click.echo(f"  {c.score:.3f}  {c.label}")
        if openset is not None:
            check = openset.check(scores, classifier.embedding())
            click.echo(f"  {'UNKNOWN' if check.unknown else 'known'}: {check.label} {openset.method} "
                       f"{check.value:.3f} ({'above' if check.value > check.limit else 'below'} {check.limit:.3f})")
    if failed:
        sys.exit(2)


def _config_options(func):
    """Adds one CLI option per RunConfig field (so every option has its TOML twin by construction)."""
    for name, field in reversed(list(config.FIELDS.items())):
        if not field.metadata["cli"]:
            continue  # TOML/environment only (secrets)
        extra = dict(field.metadata["click"])
        flag = extra.pop("flag", "--" + name.replace("_", "-"))
        default = field.default if not extra.get("multiple") and "/" not in flag else None
        if isinstance(default, tuple):
            default = field.metadata["sep"].join(map(str, default))
        shown = f" [default: {default}]" if default is not None else ""
        func = click.option(flag, name, default=None, help=field.metadata["help"] + shown, **extra)(func)
    return func


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file with any of these options")
@click.option("--check-config", is_flag=True, help="validate the options (and the model's classes) and exit")
@_config_options
@exits_on_error
def run(config_file, check_config, **options):
    """Run the pet door: camera (or replay) -> model -> door policy -> door, events and snapshots.

    Every option can also be set in a TOML file given with --config; options on the command line
    win. SIGINT/SIGTERM stop it with the door closed. Exit code 2: refused config, model or source.
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


@main.command("check-config")
@click.argument("config_file", type=click.Path(dir_okay=False))
@exits_on_error
def check_config_command(config_file):
    """Validate a door TOML file (and, if its model is there, the class names) and exit."""
    click.echo(_checked(config.load_config(config_file), config_file))


def _checked(cfg, where):
    from tl.device.model.metadata import read_model_info

    config.require_run(cfg)
    if not Path(cfg.model).is_file():
        return f"{where}: options OK; model {cfg.model} not found here, so class names were not checked"
    labels = read_model_info(cfg.model, cfg.labels).labels
    pc = config.policy_config(cfg, labels)
    return (f"{where}: OK: allow {pc.names(pc.allow)}; deny {pc.names(pc.deny)}; ignore {pc.names(pc.ignore)}; "
            f"votes {pc.votes}/{pc.window}; threshold {cfg.threshold:.2f}; door {cfg.door}")


main.add_command(enroll_command)
main.add_command(make_score_command(_config_options))

if __name__ == "__main__":
    main()
