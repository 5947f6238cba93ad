"""The tl-bench chart: median latency against accuracy, one labelled point per model × threads.

matplotlib is imported only here and only when a chart is asked for: a Pi may not have it.
"""

import logging
import textwrap

from tl.device.data import atomic
from tl.device.errors import OutputError

log = logging.getLogger(__name__)

# The chart's size in inches at PLOT_DPI: 800 × 500 pixels, readable in a README.
PLOT_SIZE = (8, 5)
PLOT_DPI = 100
_MARKERS = "o^sDvP*X"
# Latencies spanning more than this ratio get a log axis (a Keras row next to int8 rows does).
_LOG_RATIO = 8
# Label box estimate for 8-pt text at PLOT_DPI, in pixels: enough to keep labels apart.
_CHAR_PX, _LINE_PX = 6.6, 12
_NAME_CHARS = 24


def check_plotting():
    """Raises OutputError, with the pip command, when matplotlib (for --plot) is missing."""
    _import_figure()


def _import_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise OutputError("--plot needs matplotlib, which is not installed here; install it with "
                          "pip install matplotlib (or leave --plot out)") from e
    return Figure


def plot_points(ax, rows, with_accuracy):
    """Draws one point per row (bar: min to p90); returns (x, y, label, colour, bar start, bar end) per point."""
    models = list(dict.fromkeys(r.model for r in rows))
    threads = sorted({r.threads for r in rows})
    points = []
    for row in rows:
        if with_accuracy and row.accuracy is None:
            continue
        y = row.accuracy * 100 if with_accuracy else row.size_bytes / 1e6
        lat, colour = row.latency, f"C{models.index(row.model) % 10}"
        first_of_model = row is next(r for r in rows if r.model == row.model)
        ax.errorbar(lat.median_ms, y, xerr=[[lat.median_ms - lat.min_ms], [lat.p90_ms - lat.median_ms]],
                    fmt=_MARKERS[threads.index(row.threads) % len(_MARKERS)], color=colour, capsize=3, ms=7,
                    label=row.name if first_of_model else None)
        points.append((lat.median_ms, y, f"{_point_name(row)} ×{row.threads}", colour, lat.min_ms, lat.p90_ms))
    return points


def _point_name(row):
    # The variant says it best ("int8 ×2"); files that do not say are named by their stem.
    if row.variant and row.variant != "unknown":
        return row.variant
    stem = row.name.rsplit(".", 1)[0]
    return stem if len(stem) <= _NAME_CHARS else stem[: _NAME_CHARS - 1] + "…"


def set_limits(ax, points, with_accuracy):
    """Log latency axis when latencies differ by more than _LOG_RATIO; accuracy capped near 100 %."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    left, right = min(p[4] for p in points), max(p[5] for p in points)
    if max(xs) / min(xs) > _LOG_RATIO:
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.set_xlim(left / 1.4, right * 1.6)
        # Plain numbers at 1-2-5 steps: "20" reads faster than "2×10¹".
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, right * 1.2)
    spread = max(ys) - min(ys)
    low, high = min(ys) - max(2.0, spread * 0.3), max(ys) + max(1.0, spread * 0.3)
    ax.set_ylim(max(0.0, low), min(100.5, high) if with_accuracy else high)


def place_labels(ax, points):
    """Writes each point's label beside it, moving it up or down until it overlaps no earlier label."""
    placed = []
    for x, y, text, colour, *_ in sorted(points, key=lambda p: (p[1], p[0])):
        px, py = ax.transData.transform((x, y))
        width = _CHAR_PX * len(text)
        for dy in (6, -16, 18, -28, 30, -40, 42, -52):
            box = (px + 6, py + dy, px + 6 + width, py + dy + _LINE_PX)
            if not any(_overlap(box, other) for other in placed):
                break
        placed.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6 * 72 / PLOT_DPI, dy * 72 / PLOT_DPI),
                    fontsize=8, color=colour)


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def write_plot(path, report):
    """Writes the PNG: median latency (x) against top-1 accuracy (y), one labelled point per row.

    Without --data there is no accuracy, so the y axis shows the file size instead, and says so.
    """
    Figure = _import_figure()
    # A bare Figure, not pyplot: no global state, no display needed on a headless Pi.
    fig = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.09, right=0.97, top=0.92, bottom=0.17)
    rows = [r for r in report.rows if r.ok]
    with_accuracy = bool(report.data) and any(r.accuracy is not None for r in rows)
    points = plot_points(ax, rows, with_accuracy)
    if points:
        set_limits(ax, points, with_accuracy)
        place_labels(ax, points)
        ax.legend(fontsize=8, loc="best", title="colour: model · marker: threads", title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no model could be measured", ha="center", transform=ax.transAxes)
    ax.set_xlabel("median invoke latency, ms (bar: min to p90) — left is faster")
    ax.set_ylabel("top-1 accuracy, % — up is better" if with_accuracy else "model file size, MB (no --data given)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("tl-bench: latency vs accuracy" if with_accuracy else "tl-bench: latency vs size", fontsize=11, loc="left")
    caption = f"{report.machine_line} | {report.runtime} · delegate {report.delegates()} | {report.created}"
    fig.text(0.01, 0.01, "\n".join(textwrap.wrap(caption, 140)), fontsize=7, color="0.35", va="bottom")
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=PLOT_DPI)
