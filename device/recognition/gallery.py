"""The enrolment gallery: per-identity prototypes in one .npz file, tied to the embedder that made them.

Embeddings only compare within one embedding space, so the gallery records the embedder's
`embedding_id` (a hash of the backbone's weights and input spec, written by tl-convert into the
embedder and into every classifier of the same run) and refuses to mix spaces. It is written
atomically: a crash or a refused enrolment leaves the previous file as it was.
"""

import collections
import dataclasses
import datetime
import io
import json
import re
from pathlib import Path

import numpy as np

from tl.device.data.atomic import atomic_path
from tl.device.errors import ConfigError, DataError, ModelError

FORMAT = 1
# A name becomes part of log lines, file names of snapshots and MQTT payloads: letters, digits, - and _.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_SOURCES = 50  # photo names remembered per identity (for --list), newest last

Match = collections.namedtuple("Match", ["name", "similarity", "threshold", "ok"])
Match.__doc__ = "The best identity for an embedding: its name, cosine similarity, the threshold, and whether it passed."


@dataclasses.dataclass
class Identity:
    """One enrolled identity.

    Attributes:
      name: the identity's name (see NAME_RE).
      prototypes: (k, D) unit vectors, one per enrolment batch (day, night...).
      threshold: cosine similarity an embedding needs to count as this identity.
      photos: images enrolled in all.
      sources: names of the enrolled photos/videos (the last MAX_SOURCES).
      similarity: the last enrolment's leave-one-out similarities: min, median, max.
      updated: ISO time of the last enrolment.
    """

    name: str
    prototypes: np.ndarray
    threshold: float
    photos: int = 0
    sources: list = dataclasses.field(default_factory=list)
    similarity: dict = dataclasses.field(default_factory=dict)
    updated: str = ""

    def similarity_to(self, embedding):
        """Cosine similarity of a unit embedding to the nearest of this identity's prototypes."""
        return float(np.max(self.prototypes @ embedding))


@dataclasses.dataclass
class Gallery:
    """Identities enrolled with one embedder.

    Attributes:
      embedding_id: the embedding space's id (see the module docstring).
      dim: embedding size.
      embedder: file name of the embedder that started the gallery (for messages).
      identities: {name: Identity}, in enrolment order.
    """

    embedding_id: str
    dim: int
    embedder: str = ""
    identities: dict = dataclasses.field(default_factory=dict)

    def check_embedder(self, embedding_id, dim, model, gallery_path):
        """Refuses an embedder (or classifier) whose embedding space differs from the gallery's.

        Raises:
          ModelError: naming both ids and the fix.
        """
        if embedding_id != self.embedding_id or int(dim) != self.dim:
            raise ModelError(
                f"gallery {gallery_path} was enrolled with embedder {self.embedding_id} ({self.embedder}, "
                f"{self.dim}-d) but {model} has embedder {embedding_id} ({dim}-d): their embeddings do not "
                "compare. Use the model of the run the gallery was made with, or enrol again into a new "
                "gallery with this run's embedder"
            )

    def match(self, embedding, names=None, threshold=None):
        """Returns the best Match among `names` (default: every identity), or None when there is none.

        Args:
          embedding: a unit embedding vector.
          names: identities to consider.
          threshold: overrides each identity's own threshold.
        """
        best = None
        for name in names or list(self.identities):
            ident = self.identities[name]
            sim = ident.similarity_to(embedding)
            limit = ident.threshold if threshold is None else float(threshold)
            if best is None or sim - limit > best.similarity - best.threshold:
                best = Match(name, sim, limit, sim >= limit)
        return best

    def require(self, names, gallery_path):
        """Checks that every name is enrolled.

        Raises:
          ConfigError: naming the missing identities and the enrolled ones.
        """
        missing = [n for n in names if n not in self.identities]
        if missing:
            have = ", ".join(self.identities) or "none"
            raise ConfigError(f"--require-identity {', '.join(missing)}: not in gallery {gallery_path} "
                              f"(enrolled: {have}); enrol with: tl-device enroll --name {missing[0]} ...")


def check_name(name):
    """Refuses identity names that could be read as paths or break log lines.

    Raises:
      ConfigError: saying which characters are allowed.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"identity name {name!r} is not allowed: use 1-64 letters, digits, - or _, starting with "
                          "a letter or digit (no /, \\, dots or spaces)")
    return name


def load_gallery(path):
    """Reads a gallery file.

    Raises:
      DataError: the file is missing or damaged, with the command that makes one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"gallery {path} does not exist; enrol a pet first: tl-device enroll --model "
                        f"embedder_int8.tflite --name NAME PHOTOS... --gallery {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            prototypes, owner = z["prototypes"].astype(np.float32), z["owner"].astype(np.int64)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"gallery {path} is damaged or not a tl-edge gallery ({e}); enrol again into a new file") from e
    if meta.get("format", 0) > FORMAT:
        raise DataError(f"gallery {path} was written by a newer tl-edge (format {meta['format']}); upgrade tl-edge")
    gallery = Gallery(meta["embedding_id"], int(meta["dim"]), meta.get("embedder", ""))
    for i, m in enumerate(meta["identities"]):
        gallery.identities[m["name"]] = Identity(
            m["name"], prototypes[owner == i], float(m["threshold"]), int(m.get("photos", 0)),
            list(m.get("sources", [])), dict(m.get("similarity", {})), m.get("updated", ""))
    return gallery


def save_gallery(path, gallery):
    """Writes a gallery atomically (temp file + rename): the old file stays whole until the new one is."""
    idents = list(gallery.identities.values())
    meta = {
        "format": FORMAT, "embedding_id": gallery.embedding_id, "dim": gallery.dim, "embedder": gallery.embedder,
        "identities": [{"name": i.name, "threshold": round(float(i.threshold), 4), "photos": i.photos,
                        "sources": i.sources[-MAX_SOURCES:], "similarity": i.similarity, "updated": i.updated}
                       for i in idents],
    }
    protos = np.concatenate([i.prototypes for i in idents]) if idents else np.zeros((0, gallery.dim), np.float32)
    owner = np.concatenate([np.full(len(i.prototypes), k) for k, i in enumerate(idents)]) if idents else np.zeros(0)
    buf = io.BytesIO()
    np.savez(buf, prototypes=protos.astype(np.float32), owner=owner.astype(np.int32), meta=np.array(json.dumps(meta)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A file object, not a name: np.savez would append ".npz" to a temp name that lacks it.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buf.getvalue())
    return path


def add_identity(gallery, name, prototype, threshold, sources, similarity):
    """Adds one enrolment (a prototype) to an identity, creating it if new; returns the Identity."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    ident = gallery.identities.get(name)
    if ident is None:
        ident = gallery.identities[name] = Identity(name, np.zeros((0, gallery.dim), np.float32), float(threshold))
    ident.prototypes = np.concatenate([ident.prototypes, prototype[None].astype(np.float32)])
    ident.threshold = float(threshold)
    ident.photos += len(sources)
    ident.sources = (ident.sources + [str(s) for s in sources])[-MAX_SOURCES:]
    ident.similarity = similarity
    ident.updated = now
    return ident


def remove_identity(gallery, name, gallery_path):
    """Removes an identity.

    Raises:
      ConfigError: it is not enrolled (the message lists those that are).
    """
    if name not in gallery.identities:
        have = ", ".join(gallery.identities) or "none"
        raise ConfigError(f"--remove {name}: no such identity in gallery {gallery_path} (enrolled: {have})")
    del gallery.identities[name]


def describe_gallery(gallery):
    """Lines for `tl-device enroll --list`."""
    lines = [f"embedder {gallery.embedding_id} ({gallery.embedder}, {gallery.dim}-d); "
             f"{len(gallery.identities)} identit{'y' if len(gallery.identities) == 1 else 'ies'}"]
    for i in gallery.identities.values():
        sim = i.similarity
        spread = f"; enrolment similarity {sim['min']:.2f}..{sim['max']:.2f}" if "min" in sim else ""
        lines.append(f"  {i.name}: {i.photos} photo(s), {len(i.prototypes)} prototype(s), threshold "
                     f"{i.threshold:.2f}{spread}; updated {i.updated}")
    return lines
