"""tl-train vs the seeds' Keras recipe, measured in one run: wall time (cold/warm), peak memory, accuracy.

Usage: python benchmarks/training.py [--data ../shared/data/pets] [--runs 1]
Writes benchmarks/training.md (and .json) next to this script.
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def recipe(train_dir, val_dir, out, epochs=5):
    """The seeds' recipe: frozen MobileNetV2, GAP + Dense(1024) + Dense(1024) + softmax, Adam, 5 epochs."""
    import keras

    kw = dict(image_size=(224, 224), batch_size=32, label_mode="categorical", seed=0)
    train = keras.utils.image_dataset_from_directory(train_dir, shuffle=True, **kw)
    val = keras.utils.image_dataset_from_directory(val_dir, shuffle=False, **kw)
    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights="imagenet")
    base.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    x = keras.layers.Dense(1024, activation="relu")(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    outputs = keras.layers.Dense(len(train.class_names), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(train, validation_data=val, epochs=epochs, verbose=2)
    Path(out).mkdir(parents=True, exist_ok=True)
    model.save(Path(out) / "model.keras")  # for the int8 size comparison (after timing)
    (Path(out) / "labels.txt").write_text("\n".join(train.class_names) + "\n")
    return {"val_accuracy": float(hist.history["val_accuracy"][-1]), "train_accuracy": float(hist.history["accuracy"][-1]),
            "params": int(model.count_params())}


def child(kind, args, result_path):
    """Runs one measured job in this (fresh) process and writes its result with peak memory."""
    t0 = time.perf_counter()
    out = {}
    if kind == "recipe":
        out = recipe(*args)
    else:
        from tl.train.cli import main

        main(args, standalone_mode=False)
        rec = json.loads((Path(args[args.index("--out") + 1]) / "train.json").read_text())
        out = {"val_accuracy": rec["metrics"]["val"]["accuracy"], "train_accuracy": rec["metrics"]["train"]["accuracy"],
               "cache_misses": rec["data"]["cache"]["misses"]}
    out["in_process_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result_path).write_text(json.dumps(out))


def int8_size(source, train_dir, val_dir, extra=()):
    """Converts a model to int8 with tl-convert and returns the file size in MB (not timed)."""
    source = Path(source)
    cmd = [str(Path(sys.executable).with_name("tl-convert")), str(source), "--int8", "-q", "--calib-dir", str(train_dir),
           "--eval-dir", str(val_dir), *extra]
    subprocess.run(cmd, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL)
    folder = source if source.is_dir() else source.parent
    return (folder / "model_int8.tflite").stat().st_size / 1e6


def measure(kind, args):
    """Runs a child process and returns its result with the wall time (start-up and imports included)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", kind, result, "--", *map(str, args)], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - t0
    out = json.loads(Path(result).read_text())
    os.unlink(result)
    return {**out, "wall_s": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "pets"))
    ap.add_argument("--child", nargs=2, metavar=("KIND", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a.rest, a.child[1])

    from tl.device.data.sysinfo import machine_line

    train, val = Path(a.data) / "train", Path(a.data) / "val"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        common = [train, "--val-dir", val, "--cache-dir", Path(tmp) / "cache"]
        rows["tl-train cold (empty cache)"] = measure("tl-train", [*common, "--out", Path(tmp) / "run1"])
        rows["tl-train warm (cached embeddings)"] = measure("tl-train", [*common, "--out", Path(tmp) / "run2"])
        rows["seeds' recipe (Dense 1024×2, 5 epochs)"] = measure("recipe", [train, val, Path(tmp) / "recipe"])
        # Size after int8 conversion, measured after all the timings so it does not disturb them.
        rows["tl-train cold (empty cache)"]["int8_mb"] = int8_size(Path(tmp) / "run1", train, val)
        rows["tl-train warm (cached embeddings)"]["int8_mb"] = int8_size(Path(tmp) / "run2", train, val)
        rows["seeds' recipe (Dense 1024×2, 5 epochs)"]["int8_mb"] = int8_size(Path(tmp) / "recipe" / "model.keras", train, val)
    cold, base = rows["tl-train cold (empty cache)"], rows["seeds' recipe (Dense 1024×2, 5 epochs)"]
    date = datetime.date.today().isoformat()
    lines = [
        "# Training: tl-train vs the seeds' recipe",
        "",
        f"Measured {date} on {machine_line()}, one run each, in one session "
        f"(`python benchmarks/training.py`). Data: `{a.data}` (train {train}, val {val}).",
        "",
        "| run | wall time | peak memory | val accuracy | train accuracy | int8 model size |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['wall_s']:.1f} s | {r['peak_rss_mb']:.0f} MB | {100 * r['val_accuracy']:.1f} % | "
                     f"{100 * r['train_accuracy']:.1f} % | {r['int8_mb']:.2f} MB |")
    lines += ["", f"Cold speed-up over the recipe: **{base['wall_s'] / cold['wall_s']:.1f}×**. "
              "Wall time includes Python start-up and TensorFlow import; int8 size is `tl-convert --int8` of each "
        "run's model (calibrated on 300 training images)."]
    (HERE / "training.md").write_text("\n".join(lines) + "\n")
    (HERE / "training.json").write_text(json.dumps({"date": date, "machine": machine_line(), "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
