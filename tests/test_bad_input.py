"""Bad input through every entry point that decodes images, and the catalogue docs/bad-input.md.

Each entry point runs once, as a user would run it, over a corpus of bad and awkward files
(`tests.support.corpus`): no traceback, nothing half-written, every skipped file listed with its
reason, peak memory bounded although the corpus holds a decompression bomb. The rows seen become
the catalogue: `TL_WRITE_CATALOGUE=1 pytest tests/test_bad_input.py` rewrites docs/bad-input.md;
otherwise the committed file must hold every row.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.corpus import UNREADABLE, write_corpus, write_good

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CATALOGUE_FILE = REPO / "docs" / "bad-input.md"
CLI = {"tl-train": "tl.train.cli", "tl-convert": "tl.convert.cli", "tl-device": "tl.device.cli.tl_device",
       "tl-bench": "tl.device.cli.tl_bench"}
# Runs a command and reports the peak RSS of its largest process (workers included) on stderr.
RSS_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(r.returncode)")
DEVICE_RSS_MB = 400  # LiteRT + OpenCV; the bomb alone would need 1200 MB
TENSORFLOW_RSS_MB = 1500  # TensorFlow is ~0.8 GB of it; the bomb would add 1.2 GB
ENTRY_POINTS = ("tl-train scan", "tl-convert calibration", "tl-device classify", "tl-device enroll",
                "tl-device run (folder source)", "tl-bench --data", "tl-train refusals")
CATALOGUE = {}  # (input, entry point) -> (exit code, message)
RUNS = {}  # entry point -> (exit code, (command, where the skipped files are listed))
RAN = set()
HOW = {
    "tl-train scan": ("tl-train DATA --out RUN --cache-dir READ_ONLY …",
                      "on screen (the first 10) and all in RUN/train.json"),
    "tl-convert calibration": ("tl-convert RUN --int8 --calib-dir CORPUS", "a warning each, and all in convert.json"),
    "tl-device classify": ("tl-device classify MODEL FILE…", "`error: FILE: reason` each; exit 2 if any"),
    "tl-device enroll": ("tl-device enroll --model EMBEDDER --name rex CORPUS", "`skipped FILE: reason` each"),
    "tl-device run (folder source)": ("tl-device run --source CORPUS …",
                                      "a warning each; the stop event counts them as `unreadable`"),
    "tl-bench --data": ("tl-bench MODEL --data DATA", "below the table (the first 10), all in --json and --markdown"),
}


@dataclasses.dataclass
class Result:
    rc: int
    output: str
    rss_mb: float


def run_cli(name, *args, env=None, timeout=300):
    """Runs a tl-edge command in a fresh process (under the RSS wrapper)."""
    code = f"import sys; sys.argv[0] = {name!r}; from {CLI[name]} import main; main()"
    cmd = [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-c", code, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    err, _, last = proc.stderr.rstrip().rpartition("\n")
    rss = int(last.split()[-1]) / 1024 if last.startswith("maxrss_kb") else float("inf")
    return Result(proc.returncode, proc.stdout + "\n" + err, rss)


def reason_for(output, name):
    """The reason an output gives for skipping file `name` (None: the file was not skipped)."""
    found = re.search(rf"/{re.escape(name)}: (.+?)(?:; skipped)?$", output, re.MULTILINE)
    return found.group(1).strip() if found else None


def check_corpus(entry, result, cases, max_rss_mb, reasons=None):
    """Asserts what every entry point owes a corpus, and records the catalogue rows."""
    assert "Traceback" not in result.output, result.output
    assert result.rss_mb < max_rss_mb, f"{entry}: peak RSS {result.rss_mb:.0f} MB"
    for case in cases:
        reason = (reasons or {}).get(case.name) or reason_for(result.output, case.name)
        if case.expect is None:
            assert reason is None, f"{entry} refused {case.name}: {reason}"
        else:
            assert reason is not None and case.expect in reason, f"{entry} on {case.name}: {reason}\n{result.output}"
        CATALOGUE[(case.what, entry)] = (result.rc, reason or "used")
    RUNS[entry] = (result.rc, HOW[entry])
    RAN.add(entry)


def no_temporary_files(folder):
    return [p.name for p in Path(folder).rglob("*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{"flat": folder of the corpus, "classes": dog/ = the corpus, raccoon/ = good photos, "cases": [Case]}."""
    base = tmp_path_factory.mktemp("corpus")
    cases = write_corpus(base / "flat")
    write_corpus(base / "classes" / "dog")
    write_good(base / "classes" / "raccoon", 8)
    return {"flat": base / "flat", "classes": base / "classes", "cases": cases}


def test_tl_train_skips_and_lists_every_bad_file_and_trains_without_a_read_only_cache(corpus, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "run"
    result = run_cli("tl-train", corpus["classes"], "--out", out, "--weights", "none", "--image-size", "96",
                     "--views", "none", "--epochs", "2", "--cache-dir", tmp_path / "file" / "cache")
    assert result.rc == 0, result.output
    record = json.loads((out / "train.json").read_text())
    listed = {Path(s["path"]).name: s["reason"] for s in record["data"]["skipped"]}
    check_corpus("tl-train scan", result, corpus["cases"], TENSORFLOW_RSS_MB, listed)
    assert all(reason_for(result.output, name) == reason for name, reason in listed.items())  # on screen too
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "history.png", "labels.txt", "model.keras",
                                                     "openset.npz", "train.json"]
    assert result.output.count("is not writable (Not a directory)") == 1 and not record["data"]["cache"]["writable"]
    CATALOGUE[("read-only embedding cache (--cache-dir under a file)", "tl-train")] = (
        result.rc, "warning: embedding cache … is not writable (Not a directory); embeddings are computed without "
        "being kept (--cache-dir DIR chooses another)")


def test_tl_train_refuses_bad_folders_and_offline_weights_before_making_out(corpus, tmp_path):
    one_class = write_good(tmp_path / "one" / "dog", 4).parent
    (tmp_path / "file").write_text("x")
    offline = {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    refusals = [
        ("missing DATA_DIR", [tmp_path / "nowhere"], None, "does not exist or is not a folder"),
        ("DATA_DIR with one class folder", [one_class], None, "a classifier needs at least 2 class folders"),
        ("--out under a file", [corpus["classes"], "--out", tmp_path / "file" / "run"], None, "choose another with --out"),
        ("ImageNet weights missing, offline (--alpha 0.5)", [corpus["classes"], "--alpha", "0.5"], offline,
         "--weights PATH"),
    ]
    for what, args, env, expect in refusals:
        out = tmp_path / "out"
        result = run_cli("tl-train", *args, *([] if "--out" in args else ["--out", out]), "--image-size", "96", env=env)
        assert result.rc == 2 and "Traceback" not in result.output, result.output
        message = next(line for line in result.output.splitlines() if line.startswith("tl-train: error: "))
        assert expect in message and not out.exists(), message
        CATALOGUE[(what, "tl-train")] = (result.rc, message.replace(str(tmp_path), "…").removeprefix("tl-train: error: "))
    RAN.add("tl-train refusals")


def test_tl_convert_calibration_skips_and_lists_every_bad_file(corpus, openset_run, tmp_path):
    out = tmp_path / "converted"
    result = run_cli("tl-convert", openset_run["run"], "--int8", "--calib-dir", corpus["flat"], "--out", out, "-q")
    assert result.rc == 0, result.output
    record = json.loads((out / "convert.json").read_text())
    listed = {Path(s["path"]).name: s["reason"] for s in record["calibration"]["skipped"]}
    check_corpus("tl-convert calibration", result, corpus["cases"], TENSORFLOW_RSS_MB, listed)
    assert not no_temporary_files(out)


def test_tl_device_classify_names_every_unusable_image(corpus, openset_run):
    files = [corpus["flat"] / c.name for c in corpus["cases"]]
    result = run_cli("tl-device", "classify", openset_run["model"], *files)
    assert result.rc == 2  # some images could not be used; the others were classified
    check_corpus("tl-device classify", result, corpus["cases"], DEVICE_RSS_MB)
    assert result.output.count("ms)") == sum(c.expect is None for c in corpus["cases"])


def test_tl_device_enroll_skips_and_lists_every_bad_file(corpus, openset_run, tmp_path):
    gallery = tmp_path / "gallery.npz"
    result = run_cli("tl-device", "enroll", "--model", openset_run["embedder"], "--name", "rex", corpus["flat"],
                     "--gallery", gallery)
    assert result.rc == 0, result.output
    check_corpus("tl-device enroll", result, corpus["cases"], DEVICE_RSS_MB)
    assert gallery.is_file() and not no_temporary_files(tmp_path)


def test_tl_device_run_counts_bad_frames_as_unreadable(corpus, openset_run, tmp_path):
    events = tmp_path / "events.jsonl"
    result = run_cli("tl-device", "run", "--model", openset_run["model"], "--source", corpus["flat"], "--allow", "dog",
                     "--door", "mock", "--events", events)
    assert result.rc == 0, result.output
    check_corpus("tl-device run (folder source)", result, corpus["cases"], DEVICE_RSS_MB)
    lines = [json.loads(line) for line in events.read_text().splitlines()]  # every line whole
    assert lines[-1]["event"] == "stop" and lines[-1]["unreadable"] == sum(c.expect is not None for c in corpus["cases"])


def test_tl_bench_lists_skipped_data_files_and_counts_the_images_it_classified(corpus, openset_run, tmp_path):
    result = run_cli("tl-bench", openset_run["model"], "--data", corpus["classes"], "--runs", "3", "--warmup", "1",
                     "--json", tmp_path / "bench.json")
    assert result.rc == 0, result.output
    check_corpus("tl-bench --data", result, corpus["cases"], DEVICE_RSS_MB)
    report = json.loads((tmp_path / "bench.json").read_text())
    bad = sum(c.expect is not None for c in corpus["cases"])
    assert len(report["data"]["skipped"]) == bad
    assert report["data"]["images"] == report["rows"][0]["images"] == report["data"]["files"] - bad
    assert f"{report['data']['images']} images, classes dog, raccoon, {bad} file(s) skipped" in result.output


def _tables():
    """The catalogue's three tables: the runs, what each run said of each image, the refusals."""
    runs = ["| entry point | run over the corpus | exit code | skipped files listed |", "|---|---|---|---|"]
    for entry, (rc, how) in RUNS.items():
        command, listed = how
        runs.append(f"| {entry} | `{command}` | {rc} | {listed} |")
    images = ["| input | what every entry point says (or each, where they differ) |", "|---|---|"]
    refusals = ["| input | entry point | exit code | what it says |", "|---|---|---|---|"]
    for what in dict.fromkeys(w for w, _ in CATALOGUE):
        said = {entry: message for (w, entry), (_, message) in CATALOGUE.items() if w == what}
        if set(said) <= set(RUNS):
            same = len(set(said.values())) == 1
            cell = next(iter(said.values())) if same else "; ".join(f"{e}: {m}" for e, m in said.items())
            images.append(f"| {what} | {cell.replace('|', '/')} |")
        else:
            refusals += [f"| {what} | {entry} | {CATALOGUE[(what, entry)][0]} | {m.replace('|', '/')} |"
                         for entry, m in said.items()]
    return runs, images, refusals


def test_the_catalogue_lists_every_row():
    if RAN != set(ENTRY_POINTS):
        pytest.skip(f"needs every entry-point test of this file (ran: {', '.join(sorted(RAN)) or 'none'})")
    runs, images, refusals = _tables()
    if os.environ.get("TL_WRITE_CATALOGUE") == "1":
        text = HEADER + "\n".join(runs) + "\n" + IMAGES + "\n".join(images) + "\n" + REFUSALS + "\n".join(refusals) + "\n"
        CATALOGUE_FILE.write_text(text + FOOTER, encoding="utf-8")
    committed = CATALOGUE_FILE.read_text(encoding="utf-8")
    for row in runs[2:] + images[2:]:
        if not row.startswith(f"| {UNREADABLE.what} |"):  # only seen when the tests do not run as root
            assert row in committed, f"{CATALOGUE_FILE} lacks {row}; rerun with TL_WRITE_CATALOGUE=1"
    for row in refusals[2:]:
        key = "|".join(row.split("|")[:4])  # input, entry point, exit code: the messages name local paths
        assert key in committed, f"{CATALOGUE_FILE} lacks {row}; rerun with TL_WRITE_CATALOGUE=1"


HEADER = """# Bad input: what each entry point does with it

Generated by `tests/test_bad_input.py`; `TL_WRITE_CATALOGUE=1 pytest tests/test_bad_input.py`
rewrites it, and the test fails when a row here is missing. Each entry point below ran once, as a user
runs it, over a folder holding every file of the second table beside good photos. In every run: no
traceback, nothing half-written, every skipped file listed with its reason, and a peak memory under
400 MB on the device side (1.5 GB with TensorFlow loaded) although a decompression bomb that would
decode into 1.2 GB is among the files.

Every decoder of the project is `tl.device.model.image`: it reads the image's size from its header
(PNG, JPEG, GIF, BMP, WebP, TIFF) before decoding, and skips images over `TL_MAX_PIXELS` (default
50 megapixels: no camera reaches it) or under 16 px a side. Files are judged by their content, not
their extension.

## The runs

"""
IMAGES = """

## The files

"""
REFUSALS = """

## Refusals and warnings of tl-train (no `--out` folder is left behind; the folders are checked before TensorFlow starts)

"""
FOOTER = """
A file without read permission is skipped with `cannot read (Permission denied)` (not in the tables:
the tests run as root in CI, and root reads it anyway).
"""
