"""Small readers and writers of FlatBuffer tables, by field slot, over the `flatbuffers` package.

tl-edge reads and writes two schemas by hand (the TFLite model's and the metadata record's), a few
fields of each, so it needs neither generated code nor TensorFlow. A field's slot is its position
in the table's declaration in the .fbs (a union field takes two: its type, then its value).
"""

import struct

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

from tl.device.errors import ModelError


def root(buf, ident, what):
    """The root table of a FlatBuffer that must carry the 4-byte file identifier `ident`.

    Raises:
      ModelError: too short, wrong identifier, or a root offset past the end.
    """
    if len(buf) < 8 or bytes(buf[4:8]) != ident:
        raise ModelError(f"{what} is not a FlatBuffer with identifier {ident.decode()}")
    pos = struct.unpack_from("<I", buf, 0)[0]
    if pos + 4 > len(buf):
        raise ModelError(f"{what} is cut short (root table at {pos}, {len(buf)} bytes)")
    return Table(buf, pos)


def _offset(t, slot):
    return t.Offset(4 + 2 * slot)


def has(t, slot):
    """Whether the field is present."""
    return _offset(t, slot) != 0


def num_slots(t):
    """How many field slots the table's vtable has (fields a newer schema added show up here)."""
    vtable = t.Pos - t.Get(N.SOffsetTFlags, t.Pos)
    return (t.Get(N.VOffsetTFlags, vtable) - 4) // 2


def string(t, slot, default=""):
    o = _offset(t, slot)
    return t.String(t.Pos + o).decode("utf-8", "replace") if o else default


def scalar(t, slot, flags, default=0):
    o = _offset(t, slot)
    return t.Get(flags, t.Pos + o) if o else default


def table(t, slot):
    """A sub-table, or None."""
    o = _offset(t, slot)
    return Table(t.Bytes, t.Indirect(t.Pos + o)) if o else None


def table_pos(t, slot):
    """The absolute position of a sub-table, or None (for re-pointing to it from a new table)."""
    o = _offset(t, slot)
    return t.Indirect(t.Pos + o) if o else None


def tables(t, slot):
    """A vector of tables, as a list."""
    o = _offset(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]


def vector_len(t, slot):
    o = _offset(t, slot)
    return t.VectorLen(o) if o else 0


def table_at(t, slot, i):
    """Element `i` of a vector of tables (without reading the others)."""
    o = _offset(t, slot)
    return Table(t.Bytes, t.Indirect(t.Vector(o) + 4 * i))


def strings(t, slot):
    o = _offset(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [t.String(start + 4 * i).decode("utf-8", "replace") for i in range(n)]


def numbers(t, slot, fmt):
    """A vector of scalars (`fmt`: a struct code such as "f", "i", "I"), as a list."""
    o = _offset(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return list(struct.unpack_from(f"<{n}{fmt}", t.Bytes, start))


def byte_span(t, slot):
    """(start, length) of a [ubyte] vector in the buffer, or None."""
    o = _offset(t, slot)
    return (t.Vector(o), t.VectorLen(o)) if o else None


# Writing. The builder works back to front: children (strings, vectors, tables) first, then the table.


def add_table(b, fields):
    """Writes a table from {slot: (kind, value)}; kind is "off", "i8", "u8", "u32" or "i32". None values are left out.

    Returns:
      The table's offset in the builder.
    """
    prepend = {"off": b.PrependUOffsetTRelativeSlot, "i8": b.PrependInt8Slot, "u8": b.PrependUint8Slot,
               "u32": b.PrependUint32Slot, "i32": b.PrependInt32Slot}
    b.StartObject(max(fields, default=-1) + 1)
    for slot, (kind, value) in sorted(fields.items()):
        if value is not None:
            # A default of a value the field never takes, so even 0 is written (readers see it present).
            prepend[kind](slot, value, None if kind != "off" else 0)
    return b.EndObject()


def offsets_vector(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def floats_vector(b, values):
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def string_or_none(b, text):
    return b.CreateString(text) if text else None


def bytes_vector(b, data, alignment=16):
    """A [ubyte] vector whose first byte is aligned to `alignment` in the finished buffer."""
    b.StartVector(1, len(data), alignment)
    b.head -= len(data)
    b.Bytes[b.head : b.head + len(data)] = data
    return b.EndVector()


def new_builder(size=1024):
    return flatbuffers.Builder(size)
