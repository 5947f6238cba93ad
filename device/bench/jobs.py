"""Running tl-bench's jobs: one fresh worker process per model × threads × round, one progress bar.

A fresh process per job makes the peak memory the model's own, and a model that crashes the
runtime costs only its own row. Rounds interleave the rows (A B A B), so that a noisy neighbour
slows every row alike instead of the one that happened to run at the wrong moment.
"""

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

# LiteRT (and tflite-runtime) print this on stderr when XNNPACK takes the graph; it is how we know.
_XNNPACK_MARK = "XNNPACK delegate"


def run_worker(job, bar):
    """Runs one job in a fresh process; returns its result dict (a failure is {"ok": False})."""
    with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
        job_path, result_path, err_path = (Path(tmp) / n for n in ("job.json", "result.json", "stderr.txt"))
        job_path.write_text(json.dumps({**job, "result": str(result_path)}), encoding="utf-8")
        done = 0
        # stderr goes to a file, not a pipe: TensorFlow can write more than a pipe holds.
        with err_path.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tl.device.bench.worker", str(job_path)],
                                    stdout=subprocess.PIPE, stderr=err, text=True)
            for line in proc.stdout:
                if line.startswith("P "):
                    bar.update(int(line[2:]))
                    done += int(line[2:])
            proc.wait()
        stderr = err_path.read_text(errors="replace")
        bar.update(max(0, job_steps(job) - done))
        if not result_path.is_file():
            lines = [x for x in stderr.strip().splitlines() if x and not x.startswith("INFO:")]
            last = (lines or ["no message"])[-1]
            return {"ok": False, "error": f"the worker died (exit code {proc.returncode}): {last}"}
        result = json.loads(result_path.read_text(encoding="utf-8"))
    log.debug("worker stderr for %s:\n%s", job["model"], stderr)
    if result["ok"] and not result["delegate"]:
        result["delegate"] = _delegate_seen(job["kind"], stderr)
    return result


def _delegate_seen(kind, stderr):
    if kind == "keras":
        return "TensorFlow CPU"
    return "XNNPACK" if _XNNPACK_MARK in stderr else "built-in CPU kernels"


def job_steps(job):
    """Progress units of one job: the load, warm-up, timed runs and data images."""
    return 1 + job["warmup"] + job["runs"] + len(job["samples"])


def run_rounds(subjects, threads, rounds, base_job):
    """Runs every ok subject × threads, `rounds` times interleaved; returns {(index, threads): results}."""
    plan = [(i, t) for i, s in enumerate(subjects) if not s.error for t in threads]
    results = {key: [] for key in plan}
    jobs = [{**base_job, "model": str(subjects[i].path), "kind": subjects[i].kind, "threads": t} for i, t in plan]
    total = rounds * sum(job_steps(j) for j in jobs)
    with tqdm(total=total, desc="tl-bench", unit="step", disable=None, leave=False) as bar:
        for r in range(rounds):
            for key, job in zip(plan, jobs):
                bar.set_postfix_str(f"{subjects[key[0]].name} ×{key[1]} round {r + 1}/{rounds}")
                results[key].append(run_worker(job, bar))
    return results
