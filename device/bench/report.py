"""tl-bench outputs: the terminal table, Markdown and JSON (the PNG chart is in bench_plot).

Every output names the machine, the runtime and the delegate, so a figure is never read without
knowing where it came from.
"""

import dataclasses

from tl.device.data import atomic

SKIPPED_SHOWN = 10  # skipped --data files listed in the terminal table (JSON and Markdown list all)


@dataclasses.dataclass
class Report:
    """A whole tl-bench run.

    Attributes:
      created: ISO date and time.
      machine: `tl.device.data.sysinfo.machine_info()`; machine_line its one-line form.
      runtime: TFLite runtime name and version.
      settings: runs, warm-up, threads, rounds, data folder.
      data: classes and image counts of --data (None without it).
      rows: Row per model × threads, in the order run.
    """

    created: str
    machine: dict
    machine_line: str
    runtime: str
    settings: dict
    data: dict
    rows: list

    def delegates(self):
        """The delegates the rows used, e.g. 'XNNPACK' (or 'XNNPACK, TensorFlow CPU')."""
        names = dict.fromkeys(r.delegate for r in self.rows if r.ok and r.delegate)
        return ", ".join(names) or "none (built-in CPU kernels)"

    def header_lines(self):
        """Where and how the figures were taken: machine, runtime + delegate, settings, data."""
        s = self.settings
        lines = [
            f"machine: {self.machine_line}",
            f"runtime: {self.runtime} · delegate: {self.delegates()}",
            f"{s['runs']} timed runs after {s['warmup']} warm-up, {s['rounds']} round(s) interleaved · {self.created}",
        ]
        if self.data:
            d = self.data
            skipped = f", {len(d['skipped'])} file(s) skipped (listed below)" if d.get("skipped") else ""
            lines.append(f"data: {d['root']}: {d['images']} images, classes {', '.join(d['classes'])}{skipped}")
        return lines

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["rows"] = [r.to_dict() for r in self.rows]
        d["delegate"] = self.delegates()
        return d


def variant_label(row):
    """The variant, or the input type for files that do not say (e.g. '? uint8' for Coral's models)."""
    if row.variant and row.variant != "unknown":
        return row.variant
    return "? " + (row.input or "").split(" ")[-1]


def _rss(row):
    """Peak RSS and, in brackets, how much of it came with the model (peak − RSS before loading)."""
    if row.peak_rss_mb is None:
        return "—"
    grown = f" (+{row.peak_rss_mb - row.rss_base_mb:.0f})" if row.rss_base_mb is not None else ""
    return f"{row.peak_rss_mb:.0f}{grown}"


def _ms(v):
    if v is None:
        return "—"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _num(v, fmt):
    return "—" if v is None else format(v, fmt)


def table_columns(report):
    """(header, function of a row) pairs; accuracy columns only when --data was given."""
    cols = [
        ("model", lambda r: r.name), ("variant", variant_label), ("thr", lambda r: str(r.threads)),
        ("MB", lambda r: _num(r.size_bytes / 1e6, ".2f")), ("load ms", lambda r: _ms(r.load_ms)),
        ("1st ms", lambda r: _ms(r.first_ms)), ("mean", lambda r: _ms(r.latency.mean_ms)),
        ("std", lambda r: _ms(r.latency.std_ms)), ("min", lambda r: _ms(r.latency.min_ms)),
        ("median", lambda r: _ms(r.latency.median_ms)), ("p90", lambda r: _ms(r.latency.p90_ms)),
        ("p99", lambda r: _ms(r.latency.p99_ms)),
    ]
    if report.settings["rounds"] > 1:
        cols.append(("spread", lambda r: _ms(r.spread_ms)))
    cols += [("×first", lambda r: _num(r.vs_first, ".2f")), ("RSS MB", _rss)]
    if report.data:
        cols += [
            ("acc", lambda r: _num(r.accuracy, ".3f")), ("agree", lambda r: _num(r.agreement, ".3f")),
            ("img/s", lambda r: _num(r.e2e_fps, ".1f")),
        ]
    return cols


def _cells(report):
    cols = table_columns(report)
    body = []
    for row in report.rows:
        if row.ok:
            body.append([fn(row) for _, fn in cols])
        else:
            body.append([row.name, f"failed: {row.error}"])
    return [h for h, _ in cols], body


def format_table(report):
    """The terminal table: header lines, one row per model × threads, recall per model."""
    headers, body = _cells(report)
    ok_rows = [b for b in body if len(b) == len(headers)]
    widths = [max(len(x) for x in col) for col in zip(headers, *ok_rows)]
    lines = [*report.header_lines(), ""]

    def line(cells):
        # Text columns (model, variant) left-aligned, numbers right-aligned.
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines += [line(headers), line(["-" * w for w in widths])]
    for cells in body:
        lines.append(line(cells) if len(cells) == len(headers) else f"{cells[0].ljust(widths[0])}  {cells[1]}")
    lines += ["", "latency columns in ms (invoke only, after warm-up); spread: max − min of the per-round medians; "
              "×first: median ÷ first model's median"]
    lines += _recall_lines(report)
    skipped = skipped_lines(report)
    lines += ([""] + skipped) if skipped else []
    return "\n".join(lines)


def _recall_lines(report):
    lines, seen = [], set()
    for row in report.rows:
        if row.ok and row.recall is not None and row.model not in seen:
            seen.add(row.model)
            recall = " · ".join(f"{c} {v:.3f}" for c, v in row.recall.items())
            lines.append(f"recall {row.name}: {recall}")
    return ([""] + lines) if lines else []


def skipped_lines(report, most=SKIPPED_SHOWN):
    """The --data files left out, with the reason; the first `most` of them (None: all)."""
    skipped = (report.data or {}).get("skipped") or []
    shown = skipped if most is None else skipped[:most]
    lines = [f"skipped {path}: {reason}" for path, reason in shown]
    if len(skipped) > len(shown):
        lines.append(f"… and {len(skipped) - len(shown)} more (all of them in --json and --markdown)")
    return lines


def format_markdown(report):
    """The Markdown report: header, the table, then per-class recall and confusion per model."""
    headers, body = _cells(report)
    out = ["# tl-bench", "", *(f"- {h}" for h in report.header_lines())]
    out += ["", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for cells in body:
        cells = cells + [""] * (len(headers) - len(cells))
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out += ["", "Latency in ms (interpreter invoke only, after warm-up), as TFLite's `benchmark_model` reports it; "
            "spread (with several rounds) = max − min of the per-round medians; "
            "×first = median ÷ the first model's median at the same threads; RSS MB = peak resident memory of the "
            "process that ran the model (in brackets: the growth from loading and running it)."]
    out += _markdown_confusions(report)
    skipped = skipped_lines(report, most=None)
    out += (["", "## Skipped --data files", ""] + [f"- {line}" for line in skipped]) if skipped else []
    return "\n".join(out) + "\n"


def _markdown_confusions(report):
    out, seen = [], set()
    for row in report.rows:
        if not row.ok or row.confusion is None or row.model in seen:
            continue
        seen.add(row.model)
        recall = ", ".join(f"{c} {v:.3f}" for c, v in row.recall.items())
        out += ["", f"## {row.name} ({row.variant})", "", f"accuracy {row.accuracy:.4f} on {row.images} images; recall: {recall}", ""]
        out += ["| true \\ predicted | " + " | ".join(row.classes) + " |", "|---" * (len(row.classes) + 1) + "|"]
        for name, counts in zip(row.classes, row.confusion):
            out.append(f"| {name} | " + " | ".join(str(n) for n in counts) + " |")
    return out


def write_json(path, report):
    """Writes the report as JSON, atomically."""
    atomic.write_json(path, report.to_dict())


def write_markdown(path, report):
    """Writes the Markdown report, atomically."""
    atomic.write_text(path, format_markdown(report))
