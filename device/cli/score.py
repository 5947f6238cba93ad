"""`tl-device score`: replay a recording through the door against labelled visits, and sweep settings."""

import functools
import json
import logging
import tempfile
from pathlib import Path

import click

from tl.device.cli.common import exits_on_error
from tl.device.door import config
from tl.device.errors import ConfigError

log = logging.getLogger(__name__)

EPILOG = """\b
Examples:
  tl-device score porch.mp4 --truth visits.csv --model model_int8.tflite --allow dog
  tl-device score frames/ --fps 10 --truth visits.csv --config door.toml --json score.json
  tl-device score frames/ --truth visits.csv --model model_int8.tflite --allow dog \\
      --sweep threshold=0.3:0.95:0.05 --sweep votes=2/4,3/5,4/6 --plot sweep.png
\b
visits.csv:  start_s,end_s,label   (seconds of source time; one visit a line)
             2.1,4.6,dog
             7.1,9.6,raccoon
"""


class Recorder:
    """Records every frame the loop sees (a FrameRecord each), for replaying the pure policy afterwards.

    Args:
      shadow: classify frames the motion gate passes over too (a sweep may open the door where the
        run did not, and then the loop would have classified them).
    """

    def __init__(self, shadow=False):
        self.shadow = shadow
        self.records = []
        self.policy_config = None
        self.heartbeat_seconds = None
        self.watch_open = True

    def __call__(self, loop, frame, gated, scores, verdict):
        from tl.device.door.score import FrameRecord

        if self.policy_config is None:
            self.policy_config = loop.policy.config
            self.heartbeat_seconds = loop.gate.heartbeat_seconds if loop.gate is not None else None
            self.watch_open = loop.gate.watch_open if loop.gate is not None else True
        if scores is None and self.shadow:
            scores, verdict = _shadow(loop, frame)
        moving = None if gated is None else gated.changed >= loop.gate.area
        self.records.append(FrameRecord(frame.ts, None if scores is None else scores.copy(), verdict, moving))


def _shadow(loop, frame):
    scores = loop.classifier.classify_frame(frame.image, loop.roi)
    if loop.recognizer is None:
        return scores, None
    counts = loop.recognizer.counts.copy()  # the run's own counts stay the run's
    verdict = loop.recognizer.judge(scores, loop.classifier)
    loop.recognizer.counts = counts
    return scores, verdict


def make_command(config_options):
    """Builds the `score` command; `config_options` adds the options of `tl-device run` (one per config key)."""

    @click.command("score", epilog=EPILOG)
    @click.argument("recording", required=False, type=click.Path(exists=True))
    @click.option("--truth", required=True, type=click.Path(dir_okay=False),
                  help="CSV of labelled visits: header start_s,end_s,label; seconds of source time")
    @click.option("--in-time", default=0.5, show_default=True, type=click.FloatRange(0),
                  help="seconds after a visit's start by which the door must be open for an allowed class")
    @click.option("--json", "json_file", type=click.Path(dir_okay=False), help="write the result as JSON")
    @click.option("--sweep", multiple=True, metavar="KEY=VALUES",
                  help="replay these settings too (repeat; every combination): threshold=0.3:0.95:0.05 or "
                       "threshold=0.5,0.8 (allowed classes); deny=0.8,0.99 (classes that lock the door); "
                       "votes=2/4,3/5,4/6; lockout=2,30")
    @click.option("--plot", type=click.Path(dir_okay=False), help="with --sweep: PNG of the trade-off (needs matplotlib)")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file with any run option")
    @config_options
    @exits_on_error
    def score(recording, truth, in_time, json_file, sweep, plot, config_file, **options):
        """Replay RECORDING (a video or a folder of frames) through the door with a mock door, and report
        for each visit of the truth file what the door did: in_time, late or missed for allowed classes,
        kept_out or let_in for the others; plus false opens on the empty porch, lockouts and the share of
        frames classified.

        It runs the same loop as `tl-device run` and takes the same options (or --config); the door is
        always a mock and the replay never real time. --sweep classifies each frame once and replays the
        policy for every setting. Exit code 2: refused options, model, recording or truth file.
        """
        from tl.device.door import score as sc

        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            door_log = logging.getLogger("tl.device.door")
            # Quiet for this replay only: put the level back when the command ends (tests, CliRunner).
            click.get_current_context().call_on_close(functools.partial(door_log.setLevel, door_log.level))
            door_log.setLevel(logging.WARNING)  # an evening of events: the table's job
        cli = {k: (v if v != () else None) for k, v in options.items()}
        if recording is not None:
            if cli.get("source") not in (None, recording):
                raise ConfigError(f"give the recording once: RECORDING {recording} or --source {cli['source']}")
            cli["source"] = recording
        cli.update(door="mock", realtime=False)
        cfg = config.load_config(config_file, cli)
        visits = sc.read_truth(truth)
        settings = sc.parse_sweep(sweep)
        if plot and not settings:
            raise ConfigError("--plot draws a sweep; give --sweep too")
        with tempfile.TemporaryDirectory(prefix="tl-score-") as tmp:
            if cfg.events is None:  # the events go to a scratch file, read back below
                cfg = config.load_config(config_file, {**cli, "events": str(Path(tmp, "events.jsonl"))})
            events, recorder, stats = _replay(cfg, bool(settings))
        result = sc.score_events(events, visits, cfg.allow, in_time, stats.frames, stats.classified)
        _check_replay(sc, recorder, visits, cfg.allow, in_time, result)
        for line in sc.visit_lines(result):
            click.echo(line)
        result.update(recording=cfg.source, truth=str(truth), model=cfg.model, allow=list(cfg.allow),
                      votes=f"{cfg.votes[0]}/{cfg.votes[1]}", threshold=cfg.threshold,
                      thresholds=(dict(zip(recorder.policy_config.labels, map(float, recorder.policy_config.thresholds)))
                                  if recorder.policy_config is not None else None), motion=recorder.heartbeat_seconds
                      is not None)
        if settings:
            rows = sc.sweep(recorder.records, recorder.policy_config, settings, visits, cfg.allow, in_time,
                            recorder.heartbeat_seconds, recorder.watch_open)
            click.echo("")
            for line in sc.sweep_lines(rows):
                click.echo(line)
            result["sweep"] = rows
            if plot:
                _plot(rows, plot)
        if json_file:
            Path(json_file).write_text(json.dumps(result, indent=2) + "\n")
            click.echo(f"wrote {json_file}")

    return score


def _replay(cfg, shadow):
    """Runs the door loop over the recording; returns (this run's events, Recorder, RunStats)."""
    from tl.device.door.events import read_events
    from tl.device.door.loop import run_door

    recorder = Recorder(shadow=shadow)
    stats = run_door(cfg, recorder=recorder)
    events = read_events(cfg.events)
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    return events[starts[-1] if starts else 0 :], recorder, stats  # an appended events file: this run only


def _check_replay(sc, recorder, visits, allow, in_time, result):
    # The sweep replays the pure policy; it must agree with the loop on the settings in force.
    if recorder.policy_config is None:
        return
    events, _ = sc.replay(recorder.records, recorder.policy_config, recorder.heartbeat_seconds, recorder.watch_open)
    again = sc.score_events(events, visits, allow, in_time)
    if again["visits"] != result["visits"] or again["false_opens"] != result["false_opens"]:
        log.warning("the replayed policy disagrees with the door loop on this recording; trust the table, "
                    "not the sweep, and report this as a bug")


def _plot(rows, path):
    """Draws allowed visits in time and wrong opens against the threshold, a line per votes/lockout; needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        click.echo(f"matplotlib is not installed: no plot written to {path} (pip install matplotlib)")
        return
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    for series in sorted({(r["votes"], r["lockout_s"]) for r in rows}):
        mine = sorted((r for r in rows if (r["votes"], r["lockout_s"]) == series), key=lambda r: r["threshold"])
        label = f"votes {series[0]}, lockout {series[1]:g} s"
        x = [r["threshold"] for r in mine]
        line, = top.plot(x, [r["allowed_in_time"] for r in mine], "o-", ms=3, label=label, alpha=0.8)
        bottom.plot(x, [r["false_opens"] + r["others_let_in"] for r in mine], "o--", ms=3, color=line.get_color())
    for r in (r for r in rows if r["default"]):
        top.plot(r["threshold"], r["allowed_in_time"], "k*", ms=14, label="settings in force")
        bottom.plot(r["threshold"], r["false_opens"] + r["others_let_in"], "k*", ms=14)
    top.set_ylabel(f"allowed visits in time (of {rows[0]['allowed_visits']})")
    bottom.set_ylabel("wrong opens\n(false opens + others let in)")
    bottom.set_xlabel("threshold")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    click.echo(f"wrote {path}")
