"""The command lines: `tl-device` (classify, run, check-config, enroll, gallery) and `tl-bench`.

Lives here: `tl_device`, `tl_bench`, `enroll` (the enrol/gallery commands), `common` (one error →
exit-code convention and one logging set-up for every tl-edge command). Parse, validate, run.
May import: every room of `tl.device`.
"""
