"""Data on disk: class-folder scanning, classification metrics, atomic file writes, machine facts.

Lives here: `dataset` (a folder of one sub-folder per class → samples, with skipped files and why),
`metrics` (accuracy, per-class recall/precision/F1, confusion), `atomic` (write a file or a folder so
that a reader never sees half of it), `sysinfo` (what machine a number was measured on).
`tl.train` and `tl.convert` import this room. May import: `tl.device.errors`, numpy.
"""
