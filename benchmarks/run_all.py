"""Runs every benchmark script in turn (`make bench`); each writes its Markdown/JSON next to itself."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Order: the cheap, self-contained ones first. edge.md is a paper table (no script).
SCRIPTS = ["training.py", "quantization.py", "device_replay.py"]


def main():
    failed = []
    for name in SCRIPTS + sorted(p.name for p in HERE.glob("*.py") if p.name not in SCRIPTS + ["run_all.py", "scene.py", "timing.py"]):
        print(f"\n=== benchmarks/{name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)]).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
