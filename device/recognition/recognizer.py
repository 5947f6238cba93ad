"""What the door asks of each frame beyond its scores: is it something the model knows, and is it *our* pet?

Both answers come from the embedding the classifier computed in the same invoke (no second model
per frame): open-set rejection against the model's training statistics (`tl.device.recognition.openset`),
and identity against an enrolment gallery (`tl.device.recognition.gallery`). The policy gets a Verdict:
an unknown frame neither opens nor locks the door; a frame that is not the required identity
cannot open it.
"""

import collections
import logging

from tl.device.errors import ModelError
from tl.device.recognition.embedder import embedding_id
from tl.device.recognition.gallery import load_gallery
from tl.device.recognition.openset import OpenSet, stats_from_model

log = logging.getLogger(__name__)

Verdict = collections.namedtuple("Verdict", ["unknown", "identified", "reason"])
Verdict.__doc__ = ("A frame's verdict: unknown (open-set), identified (the required identity matched, or "
                   "none is required), and why, in words.")


class Recognizer:
    """Judges frames: open-set rejection and (optionally) a required identity.

    Args:
      openset: an OpenSet, or None (no rejection).
      gallery: a Gallery, or None.
      identities: names that must match for the door to open (empty: no identity required).
      identity_threshold: overrides each identity's own threshold.

    Attributes:
      counts: {"unknown": frames judged unknown, "unidentified": frames not matching the identity}.
    """

    def __init__(self, openset=None, gallery=None, identities=(), identity_threshold=None):
        self.openset = openset
        self.gallery = gallery
        self.identities = tuple(identities)
        self.identity_threshold = identity_threshold
        self.counts = collections.Counter(unknown=0, unidentified=0)
        self._was_unknown = False

    @property
    def needs_embedding(self):
        """Whether judging reads the embedding output."""
        return bool(self.identities) or (self.openset is not None and self.openset.method == "embedding")

    def judge(self, scores, classifier, ts=None, index=None):
        """Returns the Verdict of one classified frame.

        Args:
          scores: the frame's scores.
          classifier: the Classifier that just scored it (its `embedding()` is the same invoke's).
          ts, index: the frame's time and index, for the log.
        """
        embedding = classifier.embedding() if self.needs_embedding else None
        unknown, reason = False, ""
        if self.openset is not None:
            check = self.openset.check(scores, embedding)
            unknown = check.unknown
            sign = ">" if self.openset.method == "embedding" else "<"
            reason = f"{check.label} {self.openset.method} {check.value:.3f} {sign} {check.limit:.3f}" if unknown else ""
        self._log_unknown(unknown, reason, ts, index)
        identified = True
        if self.identities and not unknown:
            match = self.gallery.match(embedding, self.identities, self.identity_threshold)
            identified = match.ok
            if not identified:
                self.counts["unidentified"] += 1
                reason = f"not {'/'.join(self.identities)}: {match.name} {match.similarity:.2f} < {match.threshold:.2f}"
        return Verdict(unknown, identified, reason)

    def _log_unknown(self, unknown, reason, ts, index):
        if unknown:
            self.counts["unknown"] += 1
            if not self._was_unknown:  # once per episode: a cat-sized moth would flood the log at 10 fps
                log.info("unknown from frame %s (ts %s): %s", index, ts, reason)
        self._was_unknown = unknown

    def describe(self):
        """Text for the start event."""
        parts = [self.openset.describe() if self.openset is not None else "open-set off"]
        if self.identities:
            limits = ", ".join(f"{n} >= {self._threshold(n):.2f}" for n in self.identities)
            parts.append(f"require identity {limits}")
        return "; ".join(parts)

    def _threshold(self, name):
        return self.identity_threshold if self.identity_threshold is not None else self.gallery.identities[name].threshold


def make_recognizer(classifier, openset=None, quantile=None, gallery=None, identities=(), identity_threshold=None):
    """Builds the Recognizer for a classifier, checking the model and gallery first.

    Open-set rejection is on by default whenever the model carries open-set statistics
    (`openset=False` turns it off); with an embedding output it uses embedding distances, else
    max-softmax. The arguments come already validated (`tl.device.door.config`).

    Args:
      classifier: the Classifier.
      openset: True, False, or None (on when the model carries statistics).
      quantile: open-set quantile; None: the model's default.
      gallery: path of an enrolment gallery, or None.
      identities: names that must match for the door to open (needs `gallery`).
      identity_threshold: overrides each identity's own threshold.

    Raises:
      ModelError: open-set or identity asked of a model that cannot do it; a gallery of another embedder.
      ConfigError: a name not in the gallery.
      DataError: a missing or damaged gallery.
    """
    checker = openset_for(classifier, openset, quantile)
    identities = tuple(identities or ())
    enrolled = None
    if identities:
        if classifier.outputs.embedding is None:
            raise ModelError(f"--require-identity: model {classifier.path} has no embedding output; convert the "
                             "run again with this tl-convert (the classifier then carries one)")
        enrolled = load_gallery(gallery)
        dim = int(classifier.outputs.embedding["shape"][-1])
        enrolled.check_embedder(embedding_id(classifier.info, classifier.path), dim, classifier.path, gallery)
        enrolled.require(identities, gallery)
    elif gallery:
        log.warning("--gallery %s given without --require-identity: identities are not checked", gallery)
    return Recognizer(checker, enrolled, identities, identity_threshold)


def openset_for(classifier, enabled=None, quantile=None):
    """The OpenSet of a classifier's model: None when `enabled` is False, or is None and the model has no statistics.

    Raises:
      ModelError: `enabled` is True but the model carries no statistics, or they are for other classes.
    """
    if enabled is False:
        return None
    stats = stats_from_model(classifier.info)
    if stats is None:
        if enabled:
            raise ModelError(f"--openset: model {classifier.path} carries no open-set statistics; train with this "
                             "tl-train and convert with this tl-convert, or leave --openset out")
        log.info("model %s carries no open-set statistics: every frame counts as known", classifier.path)
        return None
    if list(stats.labels) != list(classifier.labels):
        raise ModelError(f"model {classifier.path}: its open-set statistics are for classes {list(stats.labels)}, "
                         f"not {classifier.labels}; convert it again")
    shift = (classifier.info.extra.get("openset") or {}).get("shift", 0.0)
    return OpenSet(stats, quantile, shift, use_embedding=classifier.outputs.embedding is not None)
