"""What `tl-device run` accepts: one pydantic model per concern, each field with its default, bounds and help.

The TOML file is flat (every key at the top, `[thresholds]` the one table); each key belongs to one
section here. Every field is also a `tl-device run` flag (`open_seconds` is `--open-seconds`) unless
its `cli` extra says otherwise (secrets: command lines are visible to every user in `ps`). Range and
type rules live on the fields, so `check-config` and `run` refuse the same values with the same words.
"""

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, FiniteFloat

from tl.device.hw.doors import DOOR_KINDS
from tl.device.recognition.openset import QUANTILES

_TOPIC_BAD = "#+\0"


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _names(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError('expected a list of class names, e.g. ["dog"]')
    return tuple(v.strip() for v in value)


def _whole_numbers(value, count, separator, example):
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(separator)]
        value = [int(p) for p in parts] if all(re.fullmatch(r"-?\d+", p) for p in parts) else None
    if not isinstance(value, (list, tuple)) or len(value) != count or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"expected {count} whole numbers, e.g. {example!r}")
    return tuple(value)


def _votes(value):
    k, n = _whole_numbers(value, 2, "/", "3/5")
    if not 1 <= k <= n:
        raise ValueError("need 1 <= K <= N (K allowed frames among the last N)")
    return k, n


def _roi(value):
    roi = _whole_numbers(value, 4, ",", "120,40,400,400")
    if min(roi[:2]) < 0 or min(roi[2:]) <= 0:
        raise ValueError("x, y must be 0 or more and w, h more than 0")
    return roi


def _size(value):
    size = _whole_numbers(value, 2, "x", "640x480")
    if min(size) <= 0:
        raise ValueError("width and height must be more than 0")
    return size


def _thresholds(value):
    if isinstance(value, (list, tuple)):  # from the command line: CLASS=VALUE strings
        pairs = {}
        for item in value:
            name, sep, number = str(item).rpartition("=")
            try:
                pairs[name] = float(number)
            except ValueError:
                sep = ""
            if not sep or not name:
                raise ValueError(f"{item!r}: expected CLASS=VALUE, e.g. other=0.6")
        value = pairs
    if not isinstance(value, dict):
        raise ValueError("expected a table of class = threshold")
    out = {}
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0.0 <= number <= 1.0:
            raise ValueError(f"{name} = {number!r}: a threshold must be a number within 0..1")
        out[str(name)] = float(number)
    return out


def _door(value):
    if value not in DOOR_KINDS:
        raise ValueError(f"expected one of {', '.join(DOOR_KINDS)}")
    return value


def _pin(value):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a GPIO number is 0 or more")
        return value
    return _text(value)  # gpiozero pin names: "GPIO17", "BOARD11"


def _address(value):
    """HOST:PORT, HOST or PORT (or an already parsed (host, port)) -> (host or None, port or None)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        host, port = value
        value = f"[{host or ''}]:{port or ''}" if host or port else ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(value)
    host, sep, port = text.rpartition(":") if not text.isdigit() else ("", ":", text)
    if not sep:
        host, port = text, ""
    host = host.strip("[]") or None  # [::1]:8080
    if (port and not (port.isdigit() and 0 < int(port) < 65536)) or (host and " " in host):
        raise ValueError("expected HOST:PORT with a port within 1..65535, e.g. 127.0.0.1:8080")
    return host, int(port) if port else None


def _topic(value):
    text = _text(value)
    if any(c in text for c in _TOPIC_BAD) or text.startswith("/") or text.endswith("/"):
        raise ValueError("expected an MQTT topic without wildcards or a leading/trailing /, e.g. tl-edge/door")
    return text


Text = Annotated[str, BeforeValidator(_text)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
Votes = Annotated[tuple[int, int], BeforeValidator(_votes)]
Roi = Annotated[tuple[int, int, int, int], BeforeValidator(_roi)]
Size = Annotated[tuple[int, int], BeforeValidator(_size)]
Thresholds = Annotated[dict[str, float], BeforeValidator(_thresholds)]
DoorKind = Annotated[str, BeforeValidator(_door)]
Pin = Annotated[int | str, BeforeValidator(_pin)]
Address = Annotated[tuple[str | None, int | None], BeforeValidator(_address)]
Topic = Annotated[str, BeforeValidator(_topic)]


def option(default=None, help="", *, flag=None, metavar=None, multiple=False, cli=True, show=None, **bounds):
    """A field with its help, bounds and how `tl-device run` spells it.

    Args:
      flag: the click declaration ("--realtime/--no-realtime"); default: --key-with-dashes.
      metavar, multiple: passed to click.
      cli: False for a TOML-only key (secrets).
      show: the default as written on the command line, for --help ("3/5").
      **bounds: pydantic bounds (gt, ge, lt, le).
    """
    extra = {"flag": flag, "metavar": metavar, "multiple": multiple, "cli": cli, "show": show}
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class Section(BaseModel):
    """One concern's options: strict about unknown keys, immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CaptureOptions(Section):
    """Where frames come from, at what rate and size, and which of them the model sees."""

    source: Text | None = option(None, "picamera, a camera index, a video file, an rtsp:// URL or a folder of "
                                    "frames", metavar="SRC")
    fps: FiniteFloat = option(10.0, "frames per second: a folder's frame rate, a cap for videos and cameras", gt=0)
    realtime: bool | None = option(None, "replay at the source's own pace (default: live sources yes, replays no)",
                                      flag="--realtime/--no-realtime")
    capture: Size = option((640, 480), "frame size asked of live cameras", metavar="WxH", show="640x480")
    roi: Roi | None = option(None, "region of interest (frame pixels) that the model sees", metavar="X,Y,W,H")
    motion: bool | None = option(None, "classify only frames with motion in the ROI, plus a heartbeat "
                                    "(default: live cameras yes, replays no)", flag="--motion/--no-motion")
    motion_area: FiniteFloat = option(0.01, "share of the region of interest that must change to count as motion "
                                "(0.01 = 1 %)", gt=0, le=1)
    motion_delta: int = option(20, "grey levels a pixel must change by to count as changed", ge=1, le=255)
    heartbeat_seconds: FiniteFloat = option(2.0, "with motion gating, classify a frame at least this often", gt=0)


class ModelOptions(Section):
    """The model file, and what is asked of its embedding: open-set rejection, a required identity."""

    model: Text | None = option(None, "the .tflite model (labels and input size travel inside it)", metavar="FILE")
    labels: Text | None = option(None, "labels file, for a model that carries none (one label per line)",
                                    metavar="FILE")
    openset: bool | None = option(None, "frames unlike every training class are unknown: they never open the door "
                                     "(default: on when the model carries open-set statistics)",
                                     flag="--openset/--no-openset")
    openset_quantile: FiniteFloat | None = option(None, "share of known images an open-set class radius keeps "
                                               "(default: the model's, 0.98)", ge=min(QUANTILES), le=max(QUANTILES))
    gallery: Text | None = option(None, "gallery of enrolled pets (from tl-device enroll)", metavar="FILE")
    require_identity: Names | None = option(None, "open only for this enrolled pet (repeat for several)",
                                               multiple=True, metavar="NAME")
    identity_threshold: FiniteFloat | None = option(None, "cosine similarity a frame needs to count as the pet "
                                                 "(default: the one chosen at enrolment)", ge=-1, le=1)
    night_enhance: bool = option(True, "denoise and contrast-stretch monochrome (infrared night) frames before the "
                                 "model; colour frames are never changed", flag="--night-enhance/--no-night-enhance",
                                 show="on")


class PolicyOptions(Section):
    """Which classes open or lock the door, how sure the model must be, and for how long."""

    allow: Names = option((), "class that opens the door (repeat for several)", multiple=True, metavar="CLASS")
    deny: Names | None = option(None, "class that locks the door (default: every class neither allowed nor "
                                   "ignored)", multiple=True, metavar="CLASS")
    ignore: Names | None = option(None, "class that neither opens nor locks (default: background, if the model "
                                     "has it)", multiple=True, metavar="CLASS")
    threshold: FiniteFloat | None = option(None, "score a class must reach to count; default: the model's own "
                                           "operating points (chosen by tl-train on held-out photos), else 0.8, for "
                                           "allowed classes, and 0.99 for the classes that lock the door",
                                           ge=0, le=1, show="model's")
    thresholds: Thresholds = Field(default_factory=dict, description="per-class threshold (repeat); TOML: a "
                                   "[thresholds] table", json_schema_extra={
                                       "flag": "--class-threshold", "metavar": "CLASS=VALUE", "multiple": True,
                                       "cli": True, "show": None})
    votes: Votes = option((3, 5), "open when an allowed class wins K of the last N frames", metavar="K/N", show="3/5")
    open_seconds: FiniteFloat = option(10.0, "seconds the door stays open after the last allowed frame", ge=0)
    lockout_seconds: FiniteFloat = option(2.0, "seconds the door stays locked after the last frame of a denied class (a denied "
                                          "class anywhere in the vote window keeps it shut anyway)", ge=0)


class DoorOptions(Section):
    """The door hardware."""

    door: DoorKind = option("none", "relay, servo, mock (gpiozero mock pins) or none (log only)", metavar="KIND")
    pin: Pin = option(17, "GPIO pin of the relay or servo (BCM number or gpiozero name)", metavar="PIN")
    active_low: bool = option(False, "the relay board switches on a low input", flag="--active-low/--active-high")
    open_angle: FiniteFloat = option(90.0, "servo angle when open", ge=-90, le=90)
    closed_angle: FiniteFloat = option(0.0, "servo angle when closed", ge=-90, le=90)


class OutputOptions(Section):
    """What the door leaves behind and tells others: events, snapshots, the status page, MQTT."""

    events: Text | None = option(None, "JSONL events file (appended)", metavar="FILE")
    snapshots: Text | None = option(None, "folder for JPEG snapshots of door_open and denied frames", metavar="DIR")
    snapshot_keep: int = option(200, "how many snapshots to keep (oldest deleted)", ge=1)
    collect: Text | None = option(None, "folder to collect plain photos of what the model sees into, one sub-folder "
                                  "per class it guessed (unknown/ for open-set unknowns): your porch's own training "
                                  "photos, to correct and train on", metavar="DIR")
    collect_seconds: FiniteFloat = option(1.0, "least seconds between two collected photos", gt=0)
    collect_keep: int = option(2000, "how many collected photos to keep (oldest deleted)", ge=1)
    http: Address | None = option(None, "serve the status page, /health and /metrics on [HOST:]PORT "
                                     "(host 127.0.0.1 if left out)", metavar="HOST:PORT")
    mqtt: Address | None = option(None, "publish events to this MQTT broker (port 1883 if left out); credentials: "
                                     "mqtt_username/mqtt_password in the config file or "
                                     "TL_MQTT_USERNAME/TL_MQTT_PASSWORD", metavar="HOST:PORT")
    mqtt_prefix: Topic = option("tl-edge/door", "MQTT topic prefix: <prefix>/events, /state, /availability",
                                metavar="TOPIC")
    mqtt_username: Text | None = option(None, "MQTT user (config file or TL_MQTT_USERNAME only)", cli=False)
    mqtt_password: Text | None = option(None, "MQTT password (config file or TL_MQTT_PASSWORD only)", cli=False)


class OperationOptions(Section):
    """How this machine runs it: interpreter threads, the Edge TPU, the status line."""

    threads: int | None = option(None, "CPU threads for the interpreter", ge=1)
    edgetpu: bool | None = option(None, "use the Edge TPU (default: for *_edgetpu.tflite)",
                                     flag="--edgetpu/--no-edgetpu")
    status_seconds: FiniteFloat = option(5.0, "seconds between status lines in the log", gt=0)


class RunSettings(BaseModel):
    """Every option of `tl-device run`, by concern."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelOptions = Field(default_factory=ModelOptions)
    capture: CaptureOptions = Field(default_factory=CaptureOptions)
    policy: PolicyOptions = Field(default_factory=PolicyOptions)
    door: DoorOptions = Field(default_factory=DoorOptions)
    outputs: OutputOptions = Field(default_factory=OutputOptions)
    operations: OperationOptions = Field(default_factory=OperationOptions)


SECTIONS = {name: info.annotation for name, info in RunSettings.model_fields.items()}
# Every key -> the section it belongs to, in the order --help lists them.
SECTION_OF = {key: name for name, cls in SECTIONS.items() for key in cls.model_fields}
FIELDS = {key: SECTIONS[name].model_fields[key] for key, name in SECTION_OF.items()}


def bounds_text(field):
    """A field's bounds in words ('within 0..1', 'more than 0', '1 or more'); '' when it has none."""
    b = {k: getattr(m, k) for m in field.metadata for k in ("gt", "ge", "lt", "le") if hasattr(m, k)}
    if "ge" in b and "le" in b:
        return f"within {b['ge']:g}..{b['le']:g}"
    parts = [f"more than {b['gt']:g}" if "gt" in b else f"{b['ge']:g} or more" if "ge" in b else "",
             f"at most {b['le']:g}" if "le" in b else f"less than {b['lt']:g}" if "lt" in b else ""]
    return " and ".join(p for p in parts if p)
