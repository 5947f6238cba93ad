#!/usr/bin/env bash
# make pi-check: tl-edge on arm64 Debian (Raspberry Pi OS's base) under qemu-user emulation.
#
# Builds an arm64 Debian root with mmdebstrap (cached as a tarball, unpacked fresh each run), installs
# the wheel built from this checkout with [device] into a venv there (and fails if TensorFlow comes
# with it), then, emulated: tl-device classify on Google's Coral MobileNetV2, a 200-frame porch replay
# with the mock door (events asserted), tl-device check-config on the shipped door.toml, and tl-bench.
# Timings under emulation are functional only. Needs root (chroot, binfmt_misc) and the network
# (Debian mirror, PyPI for the arm64 wheels).
#
#   sudo benchmarks/pi_check.sh                 # Debian 12 (bookworm, Python 3.11)
#   sudo SUITE=trixie benchmarks/pi_check.sh    # Debian 13 (Python 3.13)
set -euo pipefail

SUITE=${SUITE:-bookworm}
REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SHARED=${SHARED:-$REPO/../shared/data}
WORK=${PI_CHECK_DIR:-/var/tmp/tl-pi-check}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TARBALL=$WORK/$SUITE-arm64.tar
ROOT=$WORK/$SUITE-arm64
CHECK=$ROOT/opt/check
MODEL=mobilenet_v2_1.0_224_quant.tflite
started=$(date +%s)

say() { printf '\n== pi-check (%s, %ss): %s\n' "$SUITE" "$(($(date +%s) - started))" "$*"; }
fail() { printf 'pi-check FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (chroot and binfmt_misc need it): sudo make pi-check"
[ -f "$SHARED/coral/$MODEL" ] || fail "$SHARED/coral/$MODEL is missing; set SHARED=…/shared/data"
command -v mmdebstrap >/dev/null && [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || {
  say "installing mmdebstrap and qemu-user-static"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap qemu-user-static binfmt-support
}
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || fail "qemu-aarch64 is not registered with binfmt_misc"

mkdir -p "$WORK"
if [ ! -f "$TARBALL" ]; then
  say "building the arm64 Debian $SUITE root (once; cached in $TARBALL)"
  mmdebstrap --arch=arm64 --variant=apt --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$TARBALL.part" "$MIRROR"
  mv "$TARBALL.part" "$TARBALL"
fi

cleanup() {
  for m in dev/pts dev sys proc; do mountpoint -q "$ROOT/$m" && umount -l "$ROOT/$m"; done
  return 0
}
trap cleanup EXIT
cleanup
# Never delete through a mount (/dev is bound into the root while it runs).
if grep -q " $ROOT/" /proc/mounts; then fail "something is still mounted under $ROOT; unmount it first"; fi
rm -rf "$ROOT" && mkdir -p "$ROOT" && tar -xf "$TARBALL" -C "$ROOT"
# No /sys: with the host's sysfs, LiteRT's cpuinfo reads x86 CPUs and XNNPACK crashes under qemu (seen);
# without it cpuinfo prints "failed to parse" three times and runs on the generic path.
mount -t proc proc "$ROOT/proc" && mount --bind /dev "$ROOT/dev" && mount --bind /dev/pts "$ROOT/dev/pts"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# This machine's CA bundle, so pip in the root trusts what this machine's pip trusts (a TLS proxy, say).
cp -L "${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/certs/host-ca.crt"

say "building the wheel and the replay on this machine"
mkdir -p "$CHECK/frames"
rm -rf "$WORK/dist"
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$REPO"
cp "$WORK"/dist/tl_edge-*.whl "$CHECK/"
cp "$SHARED/coral/$MODEL" "$SHARED/coral/imagenet_labels.txt" "$SHARED/coral/images/pets.jpg" "$CHECK/"
"$PYTHON" - "$CHECK" "$REPO/benchmarks" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[2])
import device_replay  # noqa: E402  (the porch frames of the replay benchmark: a dog for frames 100..129)

check = Path(sys.argv[1])
device_replay.write_frames(check / "frames", 200, 100, 30)
dogs = check.joinpath("imagenet_labels.txt").read_text().splitlines()[152:270]  # ImageNet's dog breeds
allow = ", ".join(f'"{d}"' for d in dogs)
check.joinpath("replay.toml").write_text(
    f'model = "/opt/check/mobilenet_v2_1.0_224_quant.tflite"\nlabels = "/opt/check/imagenet_labels.txt"\n'
    f'source = "/opt/check/frames"\nfps = 10\nrealtime = false\nthreads = 2\nroi = "80,0,480,480"\n'
    f'allow = [{allow}]\ndeny = []\nthreshold = 0.25\ndoor = "mock"\nevents = "/opt/check/events.jsonl"\n'
    f'snapshots = "/opt/check/snapshots"\n')
EOF

say "arm64 (emulated): venv, pip install tl-edge[device]"
chroot "$ROOT" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root LC_ALL=C.UTF-8 \
  PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DEFAULT_TIMEOUT=180 /bin/bash -euo pipefail -s <<'EOF'
cd /opt/check
uname -m; python3 --version; grep PRETTY /etc/os-release
python3 -m venv /opt/venv
pip install -q --disable-pip-version-check "$(ls tl_edge-*.whl)[device]"
pip list --format=freeze > pip-freeze.txt
if grep -qiE '^(tensorflow|tf-nightly|keras)' pip-freeze.txt; then echo "TensorFlow came with [device]"; exit 1; fi
grep -iE '^(ai-edge-litert|numpy|opencv-python-headless|gpiozero|tl-edge)=' pip-freeze.txt

echo "== tl-device classify"
tl-device classify mobilenet_v2_1.0_224_quant.tflite pets.jpg --labels imagenet_labels.txt | tee classify.txt
python3 - <<'PY'
import sys
import tl.device.cli.tl_device  # noqa: F401  (the whole CLI imported)
assert "tensorflow" not in sys.modules, "the device imported TensorFlow"
PY

echo "== tl-device run: 200-frame replay, mock door"
tl-device run --config replay.toml
python3 - <<'PY'
import json
events = [json.loads(line) for line in open("/opt/check/events.jsonl")]
kinds = [e["event"] for e in events]
print("events:", kinds)
assert kinds[0] == "start" and kinds[-1] == "stop", kinds
assert events[-1]["frames"] == 200, events[-1]
opened = [e for e in events if e["event"] == "door_open"]
assert len(opened) == 1 and 100 <= opened[0]["frame"] <= 110, opened  # the dog arrives at frame 100
assert "door_close" in kinds[kinds.index("door_open"):], kinds
print("door_open at frame", opened[0]["frame"], opened[0]["label"], opened[0]["score"])
PY
ls snapshots | head -3

echo "== tl-device check-config on the shipped door.toml"
tl-device check-config "$(python3 -c 'import tl.device, pathlib; print(pathlib.Path(tl.device.__file__).parent / "deploy" / "door.toml")')"

echo "== tl-bench (timings under emulation are functional only)"
tl-bench mobilenet_v2_1.0_224_quant.tflite --labels imagenet_labels.txt --runs 5 --warmup 1 --threads 1,2
EOF
say "passed: arm64 Debian $SUITE under emulation, $(date -u +%Y-%m-%d)"
