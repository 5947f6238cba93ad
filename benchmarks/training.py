"""tl-train vs the seeds' Keras recipe, measured in one run: wall time (cold/warm), which embedder ran, peak memory,
accuracy; the embedding pass on the plain path and on 1 and 2 local Ray nodes; driver memory on a 10× longer list.

Usage: python benchmarks/training.py [--data ../shared/data/pets]
Writes benchmarks/training.md (and .json) next to this script. CPU heavy (about 10 minutes on 2 cores).
"""

import argparse
import datetime
import json
import os
import resource
import shutil
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
    elif kind == "embed":
        from training_scaling import embed_child

        out = embed_child(*args)
    else:
        from tl.train.cli import main

        main(args, standalone_mode=False)
        rec = json.loads((Path(args[args.index("--out") + 1]) / "train.json").read_text())
        emb = rec["embedding"]
        out = {"val_accuracy": rec["metrics"]["val"]["accuracy"], "train_accuracy": rec["metrics"]["train"]["accuracy"],
               "cache_misses": rec["data"]["cache"]["misses"], "embed_s": rec["timings"]["embed_s"],
               "setup_s": rec["timings"]["setup_s"], "embedder": f"{emb['name']} ({emb['runtime']})",
               "cluster": rec["cluster"], "gpus": rec["environment"]["gpus"], "timings": rec["timings"]}
        out["images_per_s"] = out["cache_misses"] / out["embed_s"] if out["cache_misses"] else None
    out["in_process_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result_path).write_text(json.dumps(out))


def quiet_env(env=None):
    """The environment for a child process, with TensorFlow's C++ logging turned down."""
    return {**(env or os.environ), "TF_CPP_MIN_LOG_LEVEL": "2"}


def int8_size(source, train_dir, val_dir, extra=()):
    """Converts a model to int8 with tl-convert and returns the file size in MB (not timed)."""
    source = Path(source)
    cmd = [str(Path(sys.executable).with_name("tl-convert")), str(source), "--int8", "-q", "--calib-dir", str(train_dir),
           "--eval-dir", str(val_dir), *extra]
    subprocess.run(cmd, check=True, env=quiet_env(), stdout=subprocess.DEVNULL)
    folder = source if source.is_dir() else source.parent
    return (folder / "model_int8.tflite").stat().st_size / 1e6


def import_seconds():
    """Wall time of a fresh Python that only imports TensorFlow and Keras: the floor under any tl-train run."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow, keras"], check=True,
                   env=quiet_env(), stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(kind, args, env=None):
    """Runs a child process and returns its result with the wall time (start-up and imports included)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", kind, result, "--", *map(str, args)], check=True,
                   env=quiet_env(env))
    wall = time.perf_counter() - t0
    out = json.loads(Path(result).read_text())
    os.unlink(result)
    return {**out, "wall_s": wall}


FIRST, COLD, WARM, COLD_TF, RECIPE = (
    "tl-train, first run on a machine (converts the LiteRT extractor)", "tl-train cold (empty embedding cache)",
    "tl-train warm (cached embeddings)", "tl-train cold, --embedder tf (TensorFlow)",
    "seeds' recipe (Dense 1024×2, 5 epochs)")


def training_rows(train, val, tmp):
    """The tl-train runs and the recipe, side by side; the int8 sizes after every timing."""
    tmp = Path(tmp)
    common = [train, "--val-dir", val]
    rows = {FIRST: measure("tl-train", [*common, "--cache-dir", tmp / "c0", "--out", tmp / "r0"])}
    shutil.copytree(tmp / "c0" / "extractors", tmp / "c1" / "extractors")  # converted once, as on any 2nd run
    rows[COLD] = measure("tl-train", [*common, "--cache-dir", tmp / "c1", "--out", tmp / "r1"])
    rows[WARM] = measure("tl-train", [*common, "--cache-dir", tmp / "c1", "--out", tmp / "r2"])
    rows[COLD_TF] = measure("tl-train", [*common, "--cache-dir", tmp / "c2", "--out", tmp / "r3", "--embedder", "tf"])
    rows[RECIPE] = measure("recipe", [train, val, tmp / "recipe"])
    rows[COLD]["int8_mb"] = int8_size(tmp / "r1", train, val)
    rows[RECIPE]["int8_mb"] = int8_size(tmp / "recipe" / "model.keras", train, val)
    return rows


def warm_lines(warm, import_s):
    """Where the warm run's time goes (its train.json timings), against the import floor."""
    t = warm.get("timings", {})
    parts = ", ".join(f"{name} {t[key]:.1f} s" for key, name in (
        ("setup_s", "backbone set-up"), ("embed_s", "cache look-up"), ("head_s", "head fit"),
        ("evaluate_s", "calibration and metrics"), ("write_s", "writing the run")) if key in t)
    return ["", f"Where the warm run's {warm['wall_s']:.1f} s go: importing TensorFlow and Keras in a fresh Python takes "
            f"{import_s:.1f} s on this machine by itself (`python -c \"import tensorflow, keras\"`); inside the pipeline "
            f"({t.get('total_s', 0):.1f} s): {parts}; the rest is the CLI's checks, open-set statistics and plots."]


def training_lines(rows, date, data, train, val):
    cold, warm, base = rows[COLD], rows[WARM], rows[RECIPE]
    lines = [
        "# Training: tl-train vs the seeds' recipe",
        "",
        f"Measured {date} on {machine_line()}, one run each, in one session "
        f"(`python benchmarks/training.py`). Data: `{data}` (train {train}, val {val}). No GPU: the GPU path "
        "(TensorFlow with mixed precision and prefetch) was **not measured** — no accelerator was lent to this run.",
        "",
        "| run | embedder | wall time | embed pass | peak memory | val accuracy | train accuracy | int8 model size |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        int8 = f"{r['int8_mb']:.2f} MB" if "int8_mb" in r else "same model"
        embed = f"{r['embed_s']:.1f} s" if "embed_s" in r else "-"
        lines.append(f"| {name} | {r.get('embedder', 'TensorFlow (Keras fit)')} | {r['wall_s']:.1f} s | {embed} | "
                     f"{r['peak_rss_mb']:.0f} MB | {100 * r['val_accuracy']:.1f} % | {100 * r['train_accuracy']:.1f} % | "
                     f"{int8} |")
    lines += ["", f"Cold tl-train takes **{cold['wall_s'] / base['wall_s']:.2f}×** the recipe's wall time "
              f"(the first run on a machine, which converts the extractor: {rows[FIRST]['wall_s'] / base['wall_s']:.2f}×); "
              f"warm: {warm['wall_s']:.1f} s. LiteRT against TensorFlow on the embedding pass: "
              f"{cold['images_per_s'] / rows[COLD_TF]['images_per_s']:.2f}× the images/s. Wall time includes Python "
              "start-up and TensorFlow import; int8 size is `tl-convert --int8` of the run's model (calibrated on "
              "300 training images)."]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "pets"))
    ap.add_argument("--weights", default=str(HERE.parent.parent / "shared" / "data" / "weights" /
                                             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
                    help="no-top MobileNetV2 .h5 for the memory check (96 px)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a.rest, a.child[1])

    import training_scaling as scaling

    train, val = Path(a.data) / "train", Path(a.data) / "val"
    import_s = import_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        rows = training_rows(train, val, tmp)
        agree = scaling.agreement(Path(tmp) / "c1", Path(tmp) / "c2")
        ray = scaling.ray_rows(measure, [train, "--val-dir", val], tmp, Path(tmp) / "c0" / "extractors")
        n_images = sum(1 for d in (train, val) for p in d.rglob("*") if p.is_file())
        memory = scaling.memory_rows(measure, tmp, a.weights, n_images)
    date = datetime.date.today().isoformat()
    lines = training_lines(rows, date, a.data, train, val) + warm_lines(rows[WARM], import_s)
    lines += scaling.agreement_lines(agree, rows[COLD], rows[COLD_TF])
    lines += scaling.scaling_lines(rows[COLD], rows[COLD_TF], ray, memory)
    (HERE / "training.md").write_text("\n".join(lines) + "\n")
    (HERE / "training.json").write_text(json.dumps({"date": date, "machine": machine_line(), "gpu_path": "not measured",
                                                    "rows": rows, "import_s": import_s, "agreement": agree, "ray": ray,
                                                    "memory": memory}, indent=2))
    print("\n".join(lines))


def machine_line():
    from tl.device.data.sysinfo import machine_line as line

    return line()


if __name__ == "__main__":
    main()
