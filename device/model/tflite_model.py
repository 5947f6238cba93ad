"""The parts of a .tflite FlatBuffer tl-edge reads or changes without TensorFlow: metadata buffers and I/O tensors.

Slots follow tensorflow/compiler/mlir/lite/schema/schema.fbs: Model {version, operator_codes,
subgraphs, description, buffers, metadata_buffer, metadata, signature_defs}; Buffer {data, offset,
size}; Metadata {name, buffer}; SubGraph {tensors, inputs, outputs, ...}; Tensor {shape, type, buffer,
name, quantization}.

Adding a metadata entry does not re-serialise the model: a new root table is written in front of
the unchanged old bytes and points into them (FlatBuffer offsets are relative, so a block moved
whole stays valid; the front part is a multiple of 16 bytes, so weight buffers keep their alignment).
"""

import collections

from flatbuffers import number_types as N

from tl.device.errors import ModelError
from tl.device.model import flatbuf as fb

TFLITE_IDENT = b"TFL3"
# Model table slots.
_VERSION, _OPCODES, _SUBGRAPHS, _DESCRIPTION, _BUFFERS, _METADATA_BUFFER, _METADATA, _SIGNATURES = range(8)
_MODEL_SLOTS = 8
# Tensor types (schema.fbs TensorType) that image models use.
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 7: "int16"}

Tensor = collections.namedtuple("Tensor", ["name", "dtype", "shape"])
Tensor.__doc__ = "A subgraph input or output: name, dtype name (\"uint8\", \"float32\"...) and shape."


def _model(model_bytes, what="model"):
    return fb.root(model_bytes, TFLITE_IDENT, what)


def metadata_names(model_bytes):
    """{name: buffer index} of the model's metadata entries (e.g. "min_runtime_version", "TFLITE_METADATA")."""
    model = _model(model_bytes)
    return {fb.string(m, 0): fb.scalar(m, 1, N.Uint32Flags) for m in fb.tables(model, _METADATA)}


def read_metadata(model_bytes, name, what="model"):
    """The bytes of the metadata entry `name`, or None when the model has none.

    Raises:
      ModelError: the entry points at a buffer the model does not have.
    """
    model = _model(model_bytes, what)
    for entry in fb.tables(model, _METADATA):
        if fb.string(entry, 0) != name:
            continue
        index, count = fb.scalar(entry, 1, N.Uint32Flags), fb.vector_len(model, _BUFFERS)
        if index >= count:
            raise ModelError(f"{what}: metadata {name} points at buffer {index} of {count}; the file is damaged")
        return _buffer_bytes(fb.table_at(model, _BUFFERS, index), model_bytes)
    return None


def _buffer_bytes(buffer, model_bytes):
    span = fb.byte_span(buffer, 0)
    if span is not None:
        start, n = span
        return bytes(model_bytes[start : start + n])
    # Models over 2 GB keep buffers outside the FlatBuffer, at an offset from the start of the file.
    offset, size = fb.scalar(buffer, 1, N.Uint64Flags), fb.scalar(buffer, 2, N.Uint64Flags)
    return bytes(model_bytes[offset : offset + size]) if offset > 1 else b""


def io_tensors(model_bytes):
    """(inputs, outputs) of the main subgraph, each a list of Tensor in the model's order."""
    model = _model(model_bytes)
    graphs = fb.tables(model, _SUBGRAPHS)
    if not graphs:
        raise ModelError("model has no subgraph")
    graph = graphs[0]
    tensors = fb.tables(graph, 0)

    def describe(index):
        t = tensors[index]
        return Tensor(fb.string(t, 3), TENSOR_TYPES.get(fb.scalar(t, 1, N.Int8Flags), "other"),
                      tuple(fb.numbers(t, 0, "i")))

    return [describe(i) for i in fb.numbers(graph, 1, "i")], [describe(i) for i in fb.numbers(graph, 2, "i")]


def with_metadata(model_bytes, name, data):
    """Returns the model with metadata entry `name` holding `data` (replacing an entry of that name).

    Args:
      model_bytes: a .tflite FlatBuffer (nothing appended).
      name: the entry's name, e.g. "TFLITE_METADATA".
      data: its bytes.

    Raises:
      ModelError: the model uses schema fields tl-edge does not know, or keeps buffers outside the FlatBuffer.
    """
    model_bytes = bytes(model_bytes)
    model = _model(model_bytes)
    if fb.num_slots(model) > _MODEL_SLOTS:
        raise ModelError("the model uses a newer TFLite schema than tl-edge knows; cannot add metadata to it")
    buffers = fb.tables(model, _BUFFERS)
    if any(fb.scalar(buf, 1, N.Uint64Flags) > 1 for buf in buffers):
        raise ModelError("the model keeps its weights outside the FlatBuffer (over 2 GB); cannot add metadata to it")
    entries = [(fb.string(m, 0), fb.scalar(m, 1, N.Uint32Flags), m.Pos) for m in fb.tables(model, _METADATA)]
    b = fb.new_builder(len(model_bytes) + len(data) + 4096)
    # The old model at the end; an object at old position p is then at builder offset `base - p`.
    fb.bytes_vector(b, model_bytes)
    base = b.Offset() - 4  # the vector's 4-byte length sits in front of the data
    old = [base - buf.Pos for buf in buffers]
    new_buffer = fb.add_table(b, {0: ("off", fb.bytes_vector(b, data))})
    kept = [base - pos for entry_name, _, pos in entries if entry_name != name]
    new_entry = fb.add_table(b, {0: ("off", b.CreateString(name)), 1: ("u32", len(old))})
    buffers_vec = fb.offsets_vector(b, [*old, new_buffer])
    metadata_vec = fb.offsets_vector(b, [*kept, new_entry])
    fields = {_BUFFERS: ("off", buffers_vec), _METADATA: ("off", metadata_vec)}
    for slot in (_OPCODES, _SUBGRAPHS, _DESCRIPTION, _METADATA_BUFFER, _SIGNATURES):
        pos = fb.table_pos(model, slot)  # a table, vector or string: where it starts
        if pos is not None:
            fields[slot] = ("off", base - pos)
    fields[_VERSION] = ("u32", fb.scalar(model, _VERSION, N.Uint32Flags))
    b.Finish(fb.add_table(b, fields), file_identifier=TFLITE_IDENT)
    return bytes(b.Output())

