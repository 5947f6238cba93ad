"""The results table (terminal and Markdown) and RUN_DIR/convert.json."""

import json
import logging
from pathlib import Path

from tl.device.data.atomic import write_json

log = logging.getLogger(__name__)

CONVERT_JSON = "convert.json"
COLUMNS = ("variant", "size", "accuracy", "agreement with Keras", "ms/image (1 thread)")


def format_size(n):
    """Human-readable bytes: 2.73 MB, 412 KB."""
    if n is None:
        return "-"
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    return f"{n / 1e3:.0f} KB"


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x):
    return "-" if x is None else f"{x:.2f}"


def table_rows(results):
    """Returns the cells of each result as strings, in COLUMNS order."""
    return [
        (r.name, format_size(r.bytes), _pct(r.accuracy), _pct(r.agreement), _ms(r.latency_ms))
        for r in results
    ]


def format_table(results, markdown=False):
    """Formats results as an aligned text table, or as a Markdown table."""
    rows = [COLUMNS] + table_rows(results)
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "| --- | " + " | ".join("---:" for _ in COLUMNS[1:]) + " |")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        out.append("  ".join(cells))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_report(out_dir, report):
    """Writes convert.json, keeping earlier variants whose files are unchanged.

    Converting --float16 after --int8 must not forget the int8 check, so a previous entry stays
    when its file still exists with the size recorded; anything else is stale and dropped.

    Returns:
      The path written.
    """
    path = Path(out_dir) / CONVERT_JSON
    previous = _read(path).get("variants", {})
    kept = {}
    for name, entry in previous.items():
        f = Path(entry.get("path", ""))
        if name not in report["variants"] and f.is_file() and f.stat().st_size == entry.get("bytes"):
            kept[name] = entry
    report = dict(report, variants={**kept, **report["variants"]})
    write_json(path, report)
    return path


def _read(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("%s is unreadable (%s); writing a fresh one", path, e)
        return {}
