"""The standard TFLite metadata record (`TFLITE_METADATA`), written and read without TensorFlow.

The record MediaPipe Tasks, the Android Task Library, Frigate's and Coral's examples read: model
name, description, version, author; per tensor a name, what it holds, the input's normalisation and
value range, and associated files (an output's labels). Its associated files travel in a ZIP
appended to the FlatBuffer (see `tl.device.model.metadata`).

Hand-written over the subset of tensorflow/tflite-support's `metadata_schema.fbs` (schema 1.5.0,
file identifier "M001") that image classifiers use, with the `flatbuffers` package: the generated
module is 117 KB for a dozen fields. Slots are the order of each table's fields in the .fbs (a
union takes two: type, then value); to check them against a new schema, read its `table` blocks.
"""

import dataclasses

from tl.device.errors import ModelError
from tl.device.model import flatbuf as fb
from tl.device.model.tflite_model import read_metadata, with_metadata

METADATA_NAME = "TFLITE_METADATA"
IDENT = b"M001"
PARSER_VERSION = "1.0.0"  # the oldest parser that reads every field written here

# AssociatedFileType
UNKNOWN, DESCRIPTIONS, TENSOR_AXIS_LABELS = 0, 1, 2
# ContentProperties union types, ColorSpaceType, ProcessUnitOptions union types.
_FEATURE, _IMAGE = 1, 2
RGB = 1
_NORMALIZATION = 1
# Table slots (metadata_schema.fbs field order).
_M_NAME, _M_DESCRIPTION, _M_VERSION, _M_SUBGRAPHS, _M_AUTHOR, _M_LICENSE, _M_FILES, _M_PARSER = range(8)
_S_INPUTS, _S_OUTPUTS, _S_FILES = 2, 3, 4
_T_NAME, _T_DESCRIPTION, _T_CONTENT, _T_UNITS, _T_STATS, _T_FILES = 0, 1, 3, 4, 5, 6


@dataclasses.dataclass(frozen=True)
class AssociatedFile:
    """A file in the model's ZIP that the record names: `type` is an AssociatedFileType (TENSOR_AXIS_LABELS...)."""

    name: str
    description: str = ""
    type: int = UNKNOWN


@dataclasses.dataclass
class TensorInfo:
    """One tensor's record.

    Attributes:
      content: "image", "feature" or "" (not said).
      mean, std: the input's NormalizationOptions (model input = (pixel - mean) / std); empty when none.
      min, max: the Stats (value range); empty when none.
      files: AssociatedFile list (the output's labels: type TENSOR_AXIS_LABELS).
    """

    name: str = ""
    description: str = ""
    content: str = ""
    mean: list = dataclasses.field(default_factory=list)
    std: list = dataclasses.field(default_factory=list)
    min: list = dataclasses.field(default_factory=list)
    max: list = dataclasses.field(default_factory=list)
    files: list = dataclasses.field(default_factory=list)

    def labels_file(self):
        """The name of the tensor's TENSOR_AXIS_LABELS file, or None."""
        return next((f.name for f in self.files if f.type == TENSOR_AXIS_LABELS), None)


@dataclasses.dataclass
class StandardMetadata:
    """The model's record: its own fields, the main subgraph's tensors, and model-level associated files."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    inputs: list = dataclasses.field(default_factory=list)
    outputs: list = dataclasses.field(default_factory=list)
    files: list = dataclasses.field(default_factory=list)
    min_parser_version: str = PARSER_VERSION

    def all_files(self):
        """Every AssociatedFile named anywhere in the record (tensor files first)."""
        return [f for t in (*self.inputs, *self.outputs) for f in t.files] + list(self.files)


def to_bytes(meta):
    """Serialises a StandardMetadata into a ModelMetadata FlatBuffer (identifier M001)."""
    b = fb.new_builder()
    inputs = fb.offsets_vector(b, [_write_tensor(b, t) for t in meta.inputs])
    outputs = fb.offsets_vector(b, [_write_tensor(b, t) for t in meta.outputs])
    subgraph = fb.add_table(b, {_S_INPUTS: ("off", inputs), _S_OUTPUTS: ("off", outputs)})
    fields = {
        _M_NAME: ("off", fb.string_or_none(b, meta.name)),
        _M_DESCRIPTION: ("off", fb.string_or_none(b, meta.description)),
        _M_VERSION: ("off", fb.string_or_none(b, meta.version)),
        _M_SUBGRAPHS: ("off", fb.offsets_vector(b, [subgraph])),
        _M_AUTHOR: ("off", fb.string_or_none(b, meta.author)),
        _M_LICENSE: ("off", fb.string_or_none(b, meta.license)),
        _M_FILES: ("off", _write_files(b, meta.files)),
        _M_PARSER: ("off", b.CreateString(meta.min_parser_version or PARSER_VERSION)),
    }
    b.Finish(fb.add_table(b, fields), file_identifier=IDENT)
    return bytes(b.Output())


def _write_files(b, files):
    if not files:
        return None
    offsets = []
    for f in files:
        name, description = b.CreateString(f.name), fb.string_or_none(b, f.description)
        offsets.append(fb.add_table(b, {0: ("off", name), 1: ("off", description), 2: ("i8", f.type or None)}))
    return fb.offsets_vector(b, offsets)


def _write_tensor(b, t):
    content = None
    if t.content:
        kind = _IMAGE if t.content == "image" else _FEATURE
        props = fb.add_table(b, {0: ("i8", RGB)} if kind == _IMAGE else {})
        content = fb.add_table(b, {0: ("u8", kind), 1: ("off", props)})
    units = None
    if t.mean:
        norm = fb.add_table(b, {0: ("off", fb.floats_vector(b, t.mean)), 1: ("off", fb.floats_vector(b, t.std))})
        units = fb.offsets_vector(b, [fb.add_table(b, {0: ("u8", _NORMALIZATION), 1: ("off", norm)})])
    stats = None
    if t.min or t.max:
        stats = fb.add_table(b, {0: ("off", fb.floats_vector(b, t.max)), 1: ("off", fb.floats_vector(b, t.min))})
    return fb.add_table(b, {
        _T_NAME: ("off", fb.string_or_none(b, t.name)),
        _T_DESCRIPTION: ("off", fb.string_or_none(b, t.description)),
        _T_CONTENT: ("off", content),
        _T_UNITS: ("off", units),
        _T_STATS: ("off", stats),
        _T_FILES: ("off", _write_files(b, t.files)),
    })


def from_bytes(buf, what="model"):
    """Parses a ModelMetadata FlatBuffer (the main subgraph's part of it).

    Raises:
      ModelError: not a metadata record (wrong identifier), or cut short.
    """
    root = fb.root(buf, IDENT, f"{what}: its {METADATA_NAME}")
    try:
        graphs = fb.tables(root, _M_SUBGRAPHS)
        graph = graphs[0] if graphs else None
        return StandardMetadata(
            name=fb.string(root, _M_NAME), description=fb.string(root, _M_DESCRIPTION),
            version=fb.string(root, _M_VERSION), author=fb.string(root, _M_AUTHOR),
            license=fb.string(root, _M_LICENSE),
            inputs=[_read_tensor(t) for t in fb.tables(graph, _S_INPUTS)] if graph else [],
            outputs=[_read_tensor(t) for t in fb.tables(graph, _S_OUTPUTS)] if graph else [],
            files=_read_files(root, _M_FILES) + (_read_files(graph, _S_FILES) if graph else []),
            min_parser_version=fb.string(root, _M_PARSER),
        )
    except (IndexError, ValueError) as e:  # struct.error is a ValueError: an offset past the end
        raise ModelError(f"{what}: its {METADATA_NAME} record is damaged ({e}); re-export the model") from e


def _read_files(t, slot):
    return [AssociatedFile(fb.string(f, 0), fb.string(f, 1), fb.scalar(f, 2, fb.N.Int8Flags))
            for f in fb.tables(t, slot)]


def _read_tensor(t):
    info = TensorInfo(name=fb.string(t, _T_NAME), description=fb.string(t, _T_DESCRIPTION),
                      files=_read_files(t, _T_FILES))
    content = fb.table(t, _T_CONTENT)
    if content is not None:
        kind = fb.scalar(content, 0, fb.N.Uint8Flags)
        info.content = {_IMAGE: "image", _FEATURE: "feature"}.get(kind, "")
    for unit in fb.tables(t, _T_UNITS):
        if fb.scalar(unit, 0, fb.N.Uint8Flags) == _NORMALIZATION:
            norm = fb.table(unit, 1)
            info.mean, info.std = fb.numbers(norm, 0, "f"), fb.numbers(norm, 1, "f")
    stats = fb.table(t, _T_STATS)
    if stats is not None:
        info.max, info.min = fb.numbers(stats, 0, "f"), fb.numbers(stats, 1, "f")
    return info


def read_standard_metadata(model_bytes, what="model"):
    """The StandardMetadata of a .tflite FlatBuffer, or None when it carries no TFLITE_METADATA."""
    data = read_metadata(model_bytes, METADATA_NAME, what)
    return None if data is None else from_bytes(data, what)


def attach(model_bytes, meta):
    """Returns the model FlatBuffer with `meta` as its TFLITE_METADATA (replacing any; nothing appended yet)."""
    return with_metadata(model_bytes, METADATA_NAME, to_bytes(meta))
