"""tl-convert: quantized, self-describing TFLite models from a tl-train run, each one checked."""

import logging
import os
import sys
from pathlib import Path

import click

# TensorFlow reads this when it is first imported (lazily, after parsing): keep its C++ chatter out.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tl.convert import calibration, pipeline
from tl.convert.report import format_table
from tl.convert.source import open_source
from tl.convert.variants import DEFAULT_IO, IO_TYPES, VARIANTS, file_name
from tl.device.cli.common import CONTEXT_SETTINGS, EXIT_CHECK, EXIT_INPUT, cli_logging, exit_codes, exits_on_error, fail
from tl.device.errors import ConfigError

log = logging.getLogger("tl.convert")

EXIT_ERROR = EXIT_INPUT  # bad input, or a step that failed: nothing half-written
EXIT_ACCURACY = EXIT_CHECK  # files written and valid, but int8 lost more than --max-drop points

EPILOG = """\b
Examples:
  tl-convert runs/pets                       # int8, calibrated on the training images
  tl-convert runs/pets --all                 # float32, float16, dynamic and int8
  tl-convert runs/pets --int8 --edgetpu      # also compile for the Coral Edge TPU
  tl-convert runs/pets --embedding           # also the embedder, for tl-device enroll
  tl-convert runs/pets --frigate /config/model_cache/pet_door   # Frigate's model.tflite + labelmap.txt
  tl-convert model.keras --labels labels.txt --eval-dir photos/val --calib-dir photos/train
""" + exit_codes("int8 accuracy dropped more than --max-drop (the files are written)")


def _variants(flags, convert_all, edgetpu, check_only, out_dir):
    chosen = [v for v in VARIANTS if convert_all or flags[v]]
    if edgetpu and "int8" not in chosen:
        chosen.append("int8")  # the Edge TPU runs the int8 model only
    if not chosen and check_only:
        chosen = [v for v in VARIANTS if (Path(out_dir) / file_name(v)).is_file()]
        if not chosen:
            raise ConfigError(f"--check-only: {out_dir} holds no model_<variant>.tflite to check; convert first")
    return tuple(chosen or ["int8"])


@click.command("tl-convert", epilog=EPILOG, context_settings=CONTEXT_SETTINGS)
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--int8", "int8", is_flag=True, help="Full-integer int8 model, calibrated (the default when no variant is given).")
@click.option("--float16", "float16", is_flag=True, help="Float16 weights, float compute.")
@click.option("--dynamic", "dynamic", is_flag=True, help="Dynamic range: int8 weights, float activations.")
@click.option("--float32", "float32", is_flag=True, help="Plain float32 model.")
@click.option("--all", "convert_all", is_flag=True, help="All four variants.")
@click.option("--io", type=click.Choice(IO_TYPES), default=DEFAULT_IO, show_default=True,
              help="Input/output tensor type of the int8 model.")
@click.option("--calib-dir", type=click.Path(path_type=Path), default=None,
              help="Calibration images (class folders or flat). [default: the training data in train.json]")
@click.option("--calib-samples", type=click.IntRange(min=1), default=calibration.DEFAULT_SAMPLES, show_default=True,
              help="Calibration images to draw, stratified across classes.")
@click.option("--seed", type=int, default=calibration.DEFAULT_SEED, show_default=True,
              help="Seed of the calibration draw.")
@click.option("--eval-dir", type=click.Path(path_type=Path), default=None,
              help="Class folders to check accuracy on. [default: the validation images in train.json]")
@click.option("--max-drop", type=click.FloatRange(min=0), default=pipeline.DEFAULT_MAX_DROP, show_default=True,
              help="Fail (exit 3) if int8 accuracy is more than this many points below float32.")
@click.option("--edgetpu", is_flag=True, help="Also compile the int8 model with edgetpu_compiler (when installed).")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), default=None,
              help="Labels file, for a model file. [default: labels.txt beside the model]")
@click.option("--image-size", type=click.IntRange(min=1), default=None,
              help="Input side in pixels, for a model file. [default: the model's own input size]")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder. [default: RUN_DIR, or the model file's folder]")
@click.option("--check-only", is_flag=True, help="Do not convert: check the existing model_<variant>.tflite files.")
@click.option("--embedding", is_flag=True,
              help="Also export embedder_<variant>.tflite (int8/float32: unit pooled features) for tl-device enroll.")
@click.option("--openset/--no-openset", default=True, show_default=True,
              help="Carry the run's open-set statistics (openset.npz) into the models, with an embedding output.")
@click.option("--frigate", type=click.Path(path_type=Path), default=None,
              help="Also write Frigate's custom classification folder: model.tflite (int8, uint8 224x224 in) "
                   "and labelmap.txt.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging (shows the converter's log on failure).")
@exits_on_error(interrupted="interrupted; no file was half-written")
def main(source, verbose, quiet, **opts):
    """Convert SOURCE to TFLite variants and check each one against the Keras model.

    SOURCE is a tl-train RUN_DIR, or a Keras model file (.keras, .h5) / SavedModel folder taking
    raw 0..255 RGB pixels (then give --labels, and --image-size if its input size is not fixed).
    Writes <out>/model_<variant>.tflite (labels and input spec inside), labels.txt and convert.json,
    and prints size, accuracy, agreement with Keras and latency at 1 thread per variant.

    Which file where: model_<variant>.tflite is for tl-device (scores and the embedding its open-set
    rejection measures); classifier_<variant>.tflite (scores only, standard TFLite metadata) is for
    MediaPipe Tasks, the Android Task Library, Frigate and any other TFLite runtime.
    """
    # TensorFlow's Python loggers repeat what our messages already say.
    for name in ("absl", "tensorflow", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with cli_logging("tl-convert", verbose=2 if verbose else 0, name="tl.convert"):
        _convert(source, progress=not quiet and sys.stderr.isatty(), **opts)


def _convert(source, progress, labels_path, image_size, out_dir, convert_all, **opts):
    flags = {v: opts.pop(v) for v in VARIANTS}
    src = open_source(source, labels_path, image_size, out_dir)
    variants = _variants(flags, convert_all, opts["edgetpu"] or opts["frigate"] is not None, opts["check_only"],
                         src.out_dir)
    outcome = pipeline.run(src, pipeline.Options(variants=variants, progress=progress, **opts), echo=click.echo)
    click.echo("")
    click.echo(format_table(outcome.results))
    click.echo(f"\nwrote {outcome.json_path}")
    if outcome.drop_message:
        fail(outcome.drop_message, EXIT_ACCURACY)
