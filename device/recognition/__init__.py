"""Who is at the door: open-set rejection, the enrolment gallery, identities.

Lives here: `openset` (per-class prototypes and distance radii: is this embedding like anything we
trained on?), `embedder` (the pooled-embedding extractor for enrolment), `gallery` (enrolled
individuals on disk), `enroll` (photos → gallery entries), `recognizer` (one verdict per frame: class,
unknown, or a known individual). Takes plain, already-validated arguments.
May import: `tl.device.errors`, `tl.device.model`, `tl.device.data`.
"""
