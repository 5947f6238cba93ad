"""Which ops of a model are not int8, and compiling the int8 model for the Coral Edge TPU."""

import collections
import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tl.convert.check import open_model
from tl.device.data.atomic import write_bytes
from tl.device.errors import TLError
from tl.device.model.metadata import embed_model_info, read_model_info, strip_model_info

COMPILER = "edgetpu_compiler"
COMPILE_TIMEOUT_S = 600
_CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")
# Ops the Edge TPU runs, by TFLite builtin name, from coral.ai/docs/edgetpu/models-intro
# ("Supported operations"), conservatively: an op left out here is reported as "may run on the CPU".
EDGETPU_OPS = frozenset(
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D EXPAND_DIMS FULLY_CONNECTED "
    "L2_NORMALIZATION LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU "
    "QUANTIZE REDUCE_MAX REDUCE_MIN RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR "
    "RESIZE_NEAREST_NEIGHBOR RSQRT SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SQUARED_DIFFERENCE SQUEEZE "
    "STRIDED_SLICE SUB SUM TANH TRANSPOSE_CONV".split()
)
INSTALL_HINT = (
    "edgetpu_compiler is not installed; it runs on Debian/Ubuntu x86-64 only. Install it from the Coral "
    "apt repository:\n"
    "  curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -\n"
    '  echo "deb https://packages.cloud.google.com/apt coral-edgetpu-stable main" | '
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list\n"
    "  sudo apt-get update && sudo apt-get install edgetpu-compiler\n"
    "then run tl-convert again with --edgetpu (on other machines: Docker with a Debian image, or "
    "Coral's Colab notebook)"
)


class EdgeTPUError(TLError, RuntimeError):
    """edgetpu_compiler failed on the model."""


@dataclasses.dataclass(frozen=True)
class Op:
    """One op of a TFLite model: its builtin name and the types of its tensors."""

    index: int
    name: str
    dtypes: tuple


def list_ops(path):
    """Returns the ops of a .tflite file in execution order (delegate nodes left out)."""
    interpreter = open_model(path)
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = []
    for d in interpreter._get_ops_details():
        if d["op_name"] == "DELEGATE":  # XNNPACK's node, not an op of the model
            continue
        idx = [int(i) for i in list(d["inputs"]) + list(d["outputs"]) if i >= 0]
        dtypes = tuple(sorted({np.dtype(tensors[i]).name for i in idx if i in tensors}))
        ops.append(Op(int(d["index"]), d["op_name"], dtypes))
    return ops


def float_ops(ops):
    """Returns the ops that compute in floating point (in an int8 model: the converter's fallbacks).

    QUANTIZE/DEQUANTIZE only convert between float and int8 (at float I/O, or around a
    fallback op), so the ops between them are the ones worth naming.
    """
    return [op for op in ops if op.name not in _CONVERSIONS and any(t.startswith("float") for t in op.dtypes)]


def edgetpu_unmapped(ops):
    """Returns the ops the Edge TPU would leave to the CPU: float ones and unsupported types.

    The compiler maps ops in order and stops at the first one it cannot run; the rest of the
    graph then runs on the CPU too, so the first entry is the one that matters most.
    """
    return [op for op in ops if op.name not in EDGETPU_OPS or any(t.startswith("float") for t in op.dtypes)]


def summarize_ops(ops):
    """Returns 'NAME xN (dtypes), ...' for a list of ops, for messages."""
    counts = collections.Counter((op.name, op.dtypes) for op in ops)
    return ", ".join(f"{name} x{n} ({'/'.join(dt)})" for (name, dt), n in counts.items())


def find_compiler():
    """Returns the path of edgetpu_compiler, or None."""
    return shutil.which(COMPILER)


def compile_edgetpu(path, compiler=None):
    """Compiles an int8 model with edgetpu_compiler into <stem>_edgetpu.tflite beside it.

    The compiler rewrites the FlatBuffer and drops the appended tl-edge info, so the info is
    put back (variant "edgetpu") before the file is written atomically.

    Returns:
      (output path, the compiler's summary log text).

    Raises:
      EdgeTPUError: when the compiler fails, with its own message.
    """
    path = Path(path)
    compiler = compiler or find_compiler()
    info = read_model_info(path)
    out = path.with_name(f"{path.stem}_edgetpu.tflite")
    with tempfile.TemporaryDirectory(prefix="tl-edgetpu-") as tmp:
        src = Path(tmp) / path.name
        src.write_bytes(strip_model_info(path.read_bytes()))
        cmd = [compiler, "-s", "-o", tmp, str(src)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise EdgeTPUError(f"{COMPILER} could not run on {path} ({e})") from e
        compiled = Path(tmp) / out.name
        if done.returncode != 0 or not compiled.is_file():
            msg = (done.stderr or done.stdout).strip().splitlines()
            raise EdgeTPUError(f"{COMPILER} failed on {path}: {msg[-1] if msg else 'no output'}")
        info.variant = "edgetpu"
        write_bytes(out, embed_model_info(compiled.read_bytes(), info))
        return out, done.stdout
