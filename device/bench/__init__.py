"""tl-bench's engine: timing jobs in fresh worker processes, result rows, report tables and charts.

Lives here: `jobs` (run workers in rounds, interleaved), `worker` (one model × threads timing and
accuracy in its own process), `results` (rows, accuracy, agreement), `report` (JSON/Markdown/table),
`plot` (latency-vs-accuracy PNG). The command itself is `tl.device.cli.tl_bench`.
May import: `tl.device.errors`, `tl.device.model`, `tl.device.data`.
"""
