"""tl-bench: size, load time, latency, memory and accuracy of .tflite models, side by side, on this device.

Each model × thread count runs in a fresh worker process (see `tl.device.bench.jobs`), so its
peak memory is its own and a model that crashes the runtime costs only its own row.
"""

import dataclasses
import datetime
import importlib.util
import logging
from pathlib import Path

import click

from tl.device.bench.jobs import run_rounds
from tl.device.bench.plot import check_plotting, write_plot
from tl.device.bench.report import Report, format_table, write_json, write_markdown
from tl.device.bench.results import Row, add_accuracy, add_comparisons, build_row
from tl.device.cli.common import CONTEXT_SETTINGS, EXIT_INPUT, cli_logging, exit_codes, exits_on_error, fail
from tl.device.data import atomic
from tl.device.data.dataset import scan_folder
from tl.device.data.sysinfo import cores, machine_info, machine_line
from tl.device.errors import ConfigError, DataError, ModelError, TLError
from tl.device.model.metadata import check_tflite, find_labels, read_model_info
from tl.device.model.runtime import runtime_version

log = logging.getLogger(__name__)

KERAS_SUFFIX = ".keras"


@dataclasses.dataclass
class Subject:
    """A model as planned before any run: its kind, its labels when readable, or why it cannot run."""

    path: Path
    name: str
    kind: str
    size_bytes: int = None
    labels: list = None
    error: str = None


def parse_threads(text):
    """Parses "1,2,4" into [1, 2, 4], refusing zero, negatives and non-numbers.

    Raises:
      ConfigError: naming the bad value and the fix.
    """
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            raise ConfigError(f"--threads {text!r}: {part!r} is not a whole number; give counts like 1,2,4") from None
        if n < 1:
            raise ConfigError(f"--threads {text!r}: {n} threads is not possible; give counts of 1 or more, like 1,2,4")
        values.append(n)
    return list(dict.fromkeys(values))


def short_names(paths):
    """File names for the table; parent/name where two files share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def inspect_model(path, name, labels_path):
    """Plans one model: what it is and its labels; a problem becomes the row's error, not an exit."""
    kind = "keras" if path.suffix == KERAS_SUFFIX else "tflite"
    subject = Subject(path=path, name=name, kind=kind)
    try:
        subject.size_bytes = path.stat().st_size
        if kind == "keras":
            subject.labels = _keras_labels(path, labels_path)
        else:
            check_tflite(path)
            subject.labels = _tflite_labels(path, labels_path)
    except OSError as e:
        subject.error = f"model {path}: cannot read ({e.strerror}); check the path"
    except TLError as e:
        subject.error = str(e)
    return subject


def _keras_labels(path, labels_path):
    if importlib.util.find_spec("tensorflow") is None:
        raise ModelError("the TF/Keras float32 row needs TensorFlow, which is not installed here; "
                         "install it with pip install 'tl-edge[train]' or leave model.keras out")
    return find_labels(path, labels_path)


def _tflite_labels(path, labels_path):
    # Embedded labels win; --labels stands in for files that carry none. A file whose labels cannot
    # be read at all is left to the worker, which loads it first and so names the real problem.
    for candidate in (None, labels_path):
        try:
            return read_model_info(path, candidate).labels
        except TLError:
            continue
    return None


def scan_data(data):
    """Lists the --data images as (path, class name) pairs, refusing an empty folder."""
    dataset = scan_folder(data, what="--data")
    return dataset, [(str(s.path), dataset.classes[s.label]) for s in dataset.samples]


def data_summary(root, dataset, samples, rows):
    """--data as measured: the images classified (the accuracy denominator) and every file left out.

    Files the scan passed over (hidden, outside a class folder) and files no worker could decode
    (corrupt, too large, too small) are both listed, with the reason; decoding does not depend on
    the model, so the first measured row's list stands for all.
    """
    measured = [r for r in rows if r.ok and r.predictions is not None]
    undecodable = [list(s) for s in measured[0].skipped] if measured else []
    bad = {path for path, _ in undecodable}
    kept = [c for path, c in samples if path not in bad]
    return {
        "root": str(root), "classes": dataset.classes, "files": len(samples) + len(dataset.skipped),
        "images": len(kept), "counts": {c: kept.count(c) for c in dataset.classes},
        "skipped": [[s.path, s.reason] for s in dataset.skipped] + undecodable,
    }


def check_labels(subjects, classes, root):
    """Refuses --data whose class folders a model does not know (by its labels).

    Raises:
      DataError: naming the model, the unknown folders and the model's labels.
    """
    for s in subjects:
        if s.error or s.labels is None:
            continue
        unknown = [c for c in classes if c not in s.labels]
        if unknown:
            shown = ", ".join(s.labels[:8]) + (", …" if len(s.labels) > 8 else "")
            raise DataError(
                f"--data {root} has class folder(s) {', '.join(unknown)} that model {s.path} does not know "
                f"(its labels: {shown}); point --data at folders named like the model's classes, "
                "or give the labels file that belongs to the model (--labels)"
            )


def build_rows(subjects, threads, results):
    """One Row per subject × threads, failed subjects included, in the order given."""
    rows = []
    for i, s in enumerate(subjects):
        for t in threads:
            if s.error:
                rows.append(Row(model=str(s.path), name=s.name, threads=t, error=s.error, size_bytes=s.size_bytes))
            else:
                rows.append(build_row(s.path, s.name, t, s.size_bytes, results[(i, t)]))
    return rows


def benchmark(models, threads, runs=200, warmup=20, data=None, labels=None, rounds=1, edgetpu=None):
    """Measures every model at every thread count and returns the Report.

    Raises:
      DataError: empty --data, or class folders a model's labels do not name.
      ConfigError: bad counts.
    """
    if not models:
        raise ConfigError("no model given; list one or more .tflite files (the first is the reference)")
    paths = [Path(m) for m in models]
    subjects = [inspect_model(p, n, labels) for p, n in zip(paths, short_names(paths))]
    dataset, samples = scan_data(data) if data else (None, [])
    if dataset:
        check_labels(subjects, dataset.classes, data)
    if max(threads) > cores():
        log.warning("%d threads on %d cores: the extra threads compete for the same cores", max(threads), cores())
    base_job = {"runs": runs, "warmup": warmup, "samples": samples, "edgetpu": edgetpu,
                "labels": str(labels) if labels else None}
    rows = build_rows(subjects, threads, run_rounds(subjects, threads, rounds, base_job))
    if dataset:
        _add_data_metrics(rows, samples, dataset.classes, data)
    add_comparisons(rows, str(paths[0]))
    return Report(
        created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(), machine_line=machine_line(), runtime=_runtime_name(),
        settings={"runs": runs, "warmup": warmup, "threads": threads, "rounds": rounds,
                  "edgetpu": edgetpu, "data": str(data) if data else None},
        data=data_summary(data, dataset, samples, rows) if dataset else None,
        rows=rows,
    )


def _add_data_metrics(rows, samples, classes, root):
    truths = [c for _, c in samples]
    for row in rows:
        if row.ok:
            add_accuracy(row, truths, classes)
    if all(r.images is None for r in rows if r.ok) and any(r.ok for r in rows):
        raise DataError(f"--data {root}: none of its {len(samples)} files could be decoded as images; add JPEG/PNG photos")


def _runtime_name():
    try:
        return runtime_version()
    except TLError as e:
        return f"none ({e})"


def _threads_option(ctx, param, value):
    try:
        return parse_threads(value)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None


def _check_outputs(*paths):
    for p in paths:
        if p:
            atomic.check_writable(Path(p).resolve().parent)


@click.command("tl-bench", context_settings=CONTEXT_SETTINGS, epilog=exit_codes())
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="class-per-folder images: accuracy, agreement, end-to-end img/s")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), help="labels file for models that carry none")
@click.option("--threads", default="1", show_default=True, callback=_threads_option, help="thread counts, e.g. 1,2,4")
@click.option("--runs", default=200, show_default=True, type=click.IntRange(1), help="timed invokes per row")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0), help="untimed invokes first")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(1), help="repeat all rows, interleaved")
@click.option("--edgetpu/--no-edgetpu", default=None, help="Edge TPU delegate (default: for *_edgetpu.tflite)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write the results as JSON")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="write a Markdown report")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="write a latency-vs-accuracy PNG")
@click.option("-v", "--verbose", count=True, help="more logging (-vv: debug)")
@exits_on_error
def main(models, data, labels, threads, runs, warmup, rounds, edgetpu, json_out, markdown, plot, verbose):
    """Benchmark MODELS (.tflite; a RUN_DIR/model.keras too, with TensorFlow) on this machine.

    One row per model × thread count: file size, load + allocate time, first inference, invoke
    latency after warm-up (mean, std, min, median, p90, p99, as TFLite's benchmark_model reports),
    peak memory; with --data also top-1 accuracy, per-class recall, agreement with the first model
    and end-to-end images/s. Example:

    \b
      tl-bench RUN/model_float32.tflite RUN/model_int8.tflite \\
        --data pets/val --threads 1,2 --plot bench.png

    Bad options, empty --data, labels that do not match --data, or no model that could be
    measured exit 2.
    """
    with cli_logging("tl-bench", verbose, default=logging.WARNING):
        _bench(models, data, labels, threads, runs, warmup, rounds, edgetpu, json_out, markdown, plot)


def _bench(models, data, labels, threads, runs, warmup, rounds, edgetpu, json_out, markdown, plot):
    _check_outputs(json_out, markdown, plot)
    if plot:
        check_plotting()  # before the run, not after minutes of measuring
    report = benchmark(list(models), threads, runs, warmup, data, labels, rounds, edgetpu)
    click.echo(format_table(report))
    for path, writer in ((json_out, write_json), (markdown, write_markdown), (plot, write_plot)):
        if path:
            writer(path, report)
            click.echo(f"wrote {path}")
    if not any(r.ok for r in report.rows):
        fail("no model could be measured (see the failed rows)", EXIT_INPUT)


if __name__ == "__main__":
    main()
