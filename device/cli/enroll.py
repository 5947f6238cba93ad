"""`tl-device enroll`: enrol a pet from photos or a video, list or remove identities of a gallery."""

import click

from tl.device.cli.common import CONTEXT_SETTINGS, exit_codes, exits_on_error
from tl.device.errors import ConfigError

EPILOG = """\b
Examples:
  tl-device enroll --model embedder_int8.tflite --name rex rex/*.jpg --gallery gallery.npz
  tl-device enroll --model embedder_int8.tflite --name rex rex.mp4 --gallery gallery.npz
  tl-device enroll --gallery gallery.npz --list
  tl-device enroll --gallery gallery.npz --remove rex
Then: tl-device run ... --gallery gallery.npz --require-identity rex
""" + exit_codes()


@click.command("enroll", epilog=EPILOG, context_settings=CONTEXT_SETTINGS)
@click.argument("photos", nargs=-1, type=click.Path())
@click.option("--gallery", required=True, type=click.Path(dir_okay=False),
              help="the gallery file (.npz): created, or extended; written atomically")
@click.option("--model", type=click.Path(dir_okay=False),
              help="embedder_<variant>.tflite from tl-convert --embedding (or a classifier with an embedding output)")
@click.option("--name", help="the identity to enrol (letters, digits, - and _)")
@click.option("--threshold", type=float, help="similarity a frame needs to count as NAME [default: suggested from the photos]")
@click.option("--max-frames", type=click.IntRange(1), default=20, show_default=True,
              help="frames taken from each video, evenly spread")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for the interpreter")
@click.option("--night-enhance/--no-night-enhance", default=True, show_default=True,
              help="denoise and contrast-stretch monochrome (infrared) photos, as tl-device run does (keep both alike)")
@click.option("--list", "list_", is_flag=True, help="list the gallery's identities and exit")
@click.option("--remove", metavar="NAME", help="remove an identity from the gallery and exit")
@exits_on_error
def enroll(photos, gallery, model, name, threshold, max_frames, threads, night_enhance, list_, remove):
    """Enrol a pet from PHOTOS (image files, folders of them, or videos) into a gallery.

    Prints the similarity of each photo to the others' prototype and a suggested threshold.
    Bad input (no usable image, a gallery from another embedder, a bad name, a missing gallery
    for --list/--remove) exits 2 and leaves the gallery as it was.
    """
    if list_ or remove:
        _manage(gallery, list_, remove, photos, name)
    else:
        _enroll(photos, gallery, model, name, threshold, max_frames, threads, night_enhance)


def _manage(path, list_, remove, photos, name):
    from tl.device.recognition import gallery as gal

    if list_ and remove:
        raise ConfigError("give --list or --remove, not both")
    if photos or name:
        raise ConfigError("--list and --remove take no photos and no --name")
    g = gal.load_gallery(path)
    if remove:
        gal.remove_identity(g, remove, path)
        gal.save_gallery(path, g)
        click.echo(f"removed {remove} from {path}")
    for line in gal.describe_gallery(g):
        click.echo(line)


def _enroll(photos, gallery, model, name, threshold, max_frames, threads, night_enhance=True):
    from tl.device.recognition.embedder import Embedder
    from tl.device.recognition.enroll import enroll as run_enrolment
    from tl.device.recognition.enroll import report_lines
    from tl.device.recognition.gallery import check_name

    if not model or not name:
        raise ConfigError("enrolling needs --model EMBEDDER.tflite and --name NAME (or use --list / --remove)")
    check_name(name)  # before loading anything: a bad name is refused at once
    if not photos:
        raise ConfigError(f"no photos given: list image files, folders or a video of {name}")
    embedder = Embedder(model, threads=threads, night=night_enhance)
    result = run_enrolment(embedder, name, photos, gallery, threshold, max_frames)
    for line in report_lines(result, gallery):
        click.echo(line)
