"""float32 vs float16 vs dynamic vs int8 on the pets model: size, accuracy, agreement with Keras, latency.

Usage: python benchmarks/quantization.py [--data ../shared/data/pets] [--run RUN_DIR] [--rounds 7]
Trains a pets model with tl-train (unless --run names one), converts it with `tl-convert --all` (timed,
as a user runs it), then times every variant at 1 and 2 threads, interleaved (A B C D A B C D ...) so a
noisy machine slows them all alike. Writes benchmarks/quantization.md (and .json) next to this script.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import interleaved_rounds

HERE = Path(__file__).resolve().parent
VARIANTS = ("float32", "float16", "dynamic", "int8")
THREADS = (1, 2)
INVOKES_PER_ROUND = 40


def run_cli(module, args):
    """Runs a tl console command in a fresh process (start-up and imports included); returns wall seconds."""
    code = f"import sys; from {module} import main; sys.argv[0] = '{module}'; main()"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.perf_counter() - t0


def time_variants(run_dir, spec, image, rounds):
    """Median ms/invoke per (variant, threads), interleaved across variants in each round.

    Returns:
      {(variant, threads): {"median_ms", "min_ms", "max_ms"}} over the per-round medians.
    """
    from tl.convert.check import open_model
    from tl.device.model.contract import set_input

    interpreters = {}
    for v in VARIANTS:
        for t in THREADS:
            it = open_model(run_dir / f"model_{v}.tflite", threads=t)
            set_input(it, image)
            interpreters[v, t] = it
    per_round = interleaved_rounds({key: it.invoke for key, it in interpreters.items()}, rounds, INVOKES_PER_ROUND)
    return {key: {"median_ms": statistics.median(m), "min_ms": min(m), "max_ms": max(m)} for key, m in per_round.items()}


def first_val_image(report, spec):
    from tl.device.data.dataset import scan_folder
    from tl.device.model.contract import prepare_image
    from tl.device.model.image import load_image

    folder = Path(report["eval"]["from"])
    sample = scan_folder(folder).samples[0]
    return prepare_image(load_image(sample.path), spec)


def markdown(report, lat, convert_s, date, machine, command):
    v = report["variants"]
    ref = report["reference"]
    lines = [
        "# Quantization: float32 vs float16 vs dynamic vs int8",
        "",
        f"Measured {date} on {machine} with {report['versions']['runtime']} (XNNPACK CPU), "
        f"TensorFlow {report['versions']['tensorflow']}. Command: `{command}`.",
        f"Model: tl-train's MobileNetV2 1.0 / {report['input']['height']} px + dense head, classes "
        f"{', '.join(report['labels'])}; accuracy on {report['eval']['images']} images of `{report['eval']['from']}`; "
        f"int8 calibrated on {report['calibration']['samples']} training images "
        f"({', '.join(f'{k} {n}' for k, n in report['calibration']['per_class'].items())}).",
        "",
        "| variant | size | accuracy | agreement with Keras | ms/image (1 thread) | ms/image (2 threads) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| Keras (model.keras) | {ref['bytes'] / 1e6:.2f} MB | {100 * ref['accuracy']:.1f} % | 100 % | - | - |",
    ]
    for name in VARIANTS:
        r = v[name]
        cells = [f"{lat[name, t]['median_ms']:.2f} ({lat[name, t]['min_ms']:.2f}–{lat[name, t]['max_ms']:.2f})"
                 for t in THREADS]
        lines.append(f"| {name} | {r['bytes'] / 1e6:.2f} MB | {100 * r['accuracy']:.1f} % | {100 * r['agreement']:.1f} % | "
                     f"{cells[0]} | {cells[1]} |")
    ratio = lat["int8", 1]["median_ms"] / lat["float32", 1]["median_ms"]
    lines += [
        "",
        f"- int8 vs float32: size **{v['int8']['bytes'] / v['float32']['bytes']:.2f}×**, latency at 1 thread "
        f"**{ratio:.2f}×**, accuracy **{100 * (v['int8']['accuracy'] - v['float32']['accuracy']):+.1f} points**, "
        f"top-1 agreement with Keras **{100 * v['int8']['agreement']:.1f} %**.",
        f"- `tl-convert --all` (convert and check all four variants, Python start-up included): **{convert_s:.0f} s**.",
        "- Latency: median of per-round medians of 40 invokes each, the spread (min–max of those medians) in "
        "brackets; rounds interleave the variants.",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "pets"))
    ap.add_argument("--run", type=Path, default=None, help="an existing tl-train RUN_DIR (else one is trained)")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()

    from tl.device.data.sysinfo import machine_line
    from tl.device.model.contract import InputSpec

    with tempfile.TemporaryDirectory() as tmp:
        run = a.run
        if run is None:
            run = Path(tmp) / "run"
            data = Path(a.data)
            run_cli("tl.train.cli", [data / "train", "--out", run, "--val-dir", data / "val"])
        convert_s = run_cli("tl.convert.cli", [run, "--all", "-q"])
        report = json.loads((run / "convert.json").read_text())
        spec = InputSpec.from_dict(report["input"])
        lat = time_variants(run, spec, first_val_image(report, spec), a.rounds)
    date = datetime.date.today().isoformat()
    text = markdown(report, lat, convert_s, date, machine_line(), "python benchmarks/quantization.py")
    (HERE / "quantization.md").write_text(text + "\n")
    record = {"date": date, "machine": machine_line(), "convert_all_s": convert_s, "convert": report,
              "latency": {f"{v}@{t}": m for (v, t), m in lat.items()}}
    (HERE / "quantization.json").write_text(json.dumps(record, indent=2))
    print(text)


if __name__ == "__main__":
    main()
