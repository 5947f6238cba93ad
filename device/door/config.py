"""The daemon's options: one typed, strict definition that both the TOML file and the CLI use.

Every field of RunConfig is a TOML key and a `tl-device run` option (`open_seconds` is
`--open-seconds`); the CLI overrides the file. Unknown keys are errors that name the key.
"""

import dataclasses
import difflib
import re
from pathlib import Path

from tl.device.door.policy import check_numbers, make_policy_config
from tl.device.errors import ConfigError
from tl.device.hw.doors import DOOR_KINDS, check_angles

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser is the tomli package
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

# Keys naming files; relative values in a TOML file are relative to the file's folder.
PATH_KEYS = ("model", "labels", "events", "snapshots", "gallery")


def _fail(key, value, expected):
    raise ConfigError(f"{key} = {value!r}: expected {expected}")


def _number(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, value, "a number")
    return float(value)


def _integer(key, value):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, value, "a whole number")
    return value


def _boolean(key, value):
    if not isinstance(value, bool):
        _fail(key, value, "true or false")
    return value


def _text(key, value):
    if not isinstance(value, str) or not value.strip():
        _fail(key, value, "a non-empty string")
    return value.strip()


def _names(key, value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        _fail(key, value, "a list of class names, e.g. [\"dog\"]")
    return tuple(value)


def _ints(key, value, count, separator, example):
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(separator)]
        if not all(re.fullmatch(r"-?\d+", p) for p in parts):
            _fail(key, value, f"{count} whole numbers, e.g. {example!r}")
        value = [int(p) for p in parts]
    if not isinstance(value, (list, tuple)) or len(value) != count or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        _fail(key, value, f"{count} whole numbers, e.g. {example!r}")
    return tuple(value)


def _votes(key, value):
    return _ints(key, value, 2, "/", "3/5")


def _roi(key, value):
    return _ints(key, value, 4, ",", "120,40,400,400")


def _size(key, value):
    return _ints(key, value, 2, "x", "640x480")


def _thresholds(key, value):
    if isinstance(value, (list, tuple)):  # from the CLI: NAME=VALUE strings
        pairs = {}
        for item in value:
            name, sep, number = str(item).rpartition("=")
            try:
                pairs[name] = float(number)
            except ValueError:
                sep = ""
            if not sep or not name:
                _fail("--class-threshold", item, "CLASS=VALUE, e.g. other=0.6")
        value = pairs
    if not isinstance(value, dict):
        _fail(key, value, "a table of class = threshold")
    return {str(k): _number(f"{key}.{k}", v) for k, v in value.items()}


def _door(key, value):
    if value not in DOOR_KINDS:
        _fail(key, value, f"one of {', '.join(DOOR_KINDS)}")
    return value


def _pin(key, value):
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _text(key, value)  # gpiozero pin names: "GPIO17", "BOARD11"


def _fraction(key, value):
    value = _number(key, value)
    if not 0.0 < value <= 1.0:
        _fail(key, value, "a share of the region, more than 0 and at most 1 (0.01 = 1 %)")
    return value


def _grey_level(key, value):
    value = _integer(key, value)
    if not 1 <= value <= 255:
        _fail(key, value, "a grey-level difference, 1..255")
    return value


def _seconds(key, value):
    value = _number(key, value)
    if value <= 0:
        _fail(key, value, "a number of seconds more than 0")
    return value


def _address(key, value):
    """HOST:PORT, HOST or PORT -> (host or None, port or None); the user of the value fills the gaps."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(key, value)
    host, sep, port = text.rpartition(":") if not text.isdigit() else ("", ":", text)
    if not sep:
        host, port = text, ""
    host = host.strip("[]") or None  # [::1]:8080
    if (port and not (port.isdigit() and 0 < int(port) < 65536)) or (host and " " in host):
        _fail(key, value, "HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port) if port else None


def _topic(key, value):
    text = _text(key, value)
    if any(c in text for c in "#+\0") or text.startswith("/") or text.endswith("/"):
        _fail(key, value, "an MQTT topic without wildcards or a leading/trailing /, e.g. tl-edge/door")
    return text


def _opt(default, parse, help, factory=None, sep=None, cli=True, **click):
    # sep: how a tuple default is written on the command line ("3/5"), for --help.
    # cli=False: a TOML-only key (secrets: command lines are visible to every user in ps).
    metadata = {"parse": parse, "help": help, "click": click, "sep": sep, "cli": cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class RunConfig:
    """Everything `tl-device run` needs; each field is a TOML key and a CLI option."""

    model: str = _opt(None, _text, "the .tflite model (labels and input size travel inside it)", metavar="FILE")
    labels: str = _opt(None, _text, "labels file, for a model that carries none (one label per line)",
                       metavar="FILE")
    source: str = _opt(None, _text, "picamera, a camera index, a video file, an rtsp:// URL or a folder of frames",
                       metavar="SRC")
    fps: float = _opt(10.0, _number, "frames per second: a folder's frame rate, a cap for videos and cameras",
                      type=float)
    realtime: bool = _opt(None, _boolean, "replay at the source's own pace (default: live sources yes, replays no)",
                          flag="--realtime/--no-realtime")
    capture: tuple = _opt((640, 480), _size, "frame size asked of live cameras", metavar="WxH", sep="x")
    roi: tuple = _opt(None, _roi, "region of interest (frame pixels) that the model sees", metavar="X,Y,W,H")
    threads: int = _opt(None, _integer, "CPU threads for the interpreter", type=int)
    edgetpu: bool = _opt(None, _boolean, "use the Edge TPU (default: for *_edgetpu.tflite)",
                         flag="--edgetpu/--no-edgetpu")
    allow: tuple = _opt((), _names, "class that opens the door (repeat for several)", multiple=True, metavar="CLASS")
    deny: tuple = _opt(None, _names, "class that locks the door (default: every class neither allowed nor ignored)",
                       multiple=True, metavar="CLASS")
    ignore: tuple = _opt(None, _names, "class that neither opens nor locks (default: background, if the model has it)",
                         multiple=True, metavar="CLASS")
    threshold: float = _opt(0.8, _number, "score a class must reach to count, 0..1", type=float)
    thresholds: dict = _opt(None, _thresholds, "per-class threshold (repeat); TOML: a [thresholds] table",
                            factory=dict, flag="--class-threshold", multiple=True, metavar="CLASS=VALUE")
    votes: tuple = _opt((3, 5), _votes, "open when an allowed class wins K of the last N frames", metavar="K/N",
                        sep="/")
    open_seconds: float = _opt(10.0, _number, "seconds the door stays open after the last allowed frame", type=float)
    lockout_seconds: float = _opt(30.0, _number, "seconds the door stays locked after a denied class", type=float)
    openset: bool = _opt(None, _boolean, "frames unlike every training class are unknown: they never open the door "
                         "(default: on when the model carries open-set statistics)", flag="--openset/--no-openset")
    openset_quantile: float = _opt(None, _number, "share of known images an open-set class radius keeps, 0.9..1 "
                                   "(default: the model's, 0.98)", type=float)
    gallery: str = _opt(None, _text, "gallery of enrolled pets (from tl-device enroll)", metavar="FILE")
    require_identity: tuple = _opt(None, _names, "open only for this enrolled pet (repeat for several)",
                                   multiple=True, metavar="NAME")
    identity_threshold: float = _opt(None, _number, "similarity a frame needs to count as the pet "
                                     "(default: the one chosen at enrolment)", type=float)
    door: str = _opt("none", _door, "relay, servo, mock (gpiozero mock pins) or none (log only)",
                     metavar="KIND")
    pin: int = _opt(17, _pin, "GPIO pin of the relay or servo (BCM number or gpiozero name)", metavar="PIN")
    active_low: bool = _opt(False, _boolean, "the relay board switches on a low input",
                            flag="--active-low/--active-high")
    open_angle: float = _opt(90.0, _number, "servo angle when open, -90..90", type=float)
    closed_angle: float = _opt(0.0, _number, "servo angle when closed, -90..90", type=float)
    events: str = _opt(None, _text, "JSONL events file (appended)", metavar="FILE")
    snapshots: str = _opt(None, _text, "folder for JPEG snapshots of door_open and denied frames", metavar="DIR")
    snapshot_keep: int = _opt(200, _integer, "how many snapshots to keep (oldest deleted)", type=int)
    status_seconds: float = _opt(5.0, _number, "seconds between status lines in the log", type=float)
    motion: bool = _opt(None, _boolean, "classify only frames with motion in the ROI, plus a heartbeat "
                        "(default: live cameras yes, replays no)", flag="--motion/--no-motion")
    motion_area: float = _opt(0.01, _fraction, "share of the ROI that must change to count as motion", type=float)
    motion_delta: int = _opt(20, _grey_level, "grey levels a pixel must change by to count as changed", type=int)
    heartbeat_seconds: float = _opt(2.0, _seconds, "with motion gating, classify a frame at least this often",
                                    type=float)
    mqtt: tuple = _opt(None, _address, "publish events to this MQTT broker (port 1883 if left out); credentials: "
                       "mqtt_username/mqtt_password in the config file or TL_MQTT_USERNAME/TL_MQTT_PASSWORD",
                       metavar="HOST:PORT")
    mqtt_prefix: str = _opt("tl-edge/door", _topic, "MQTT topic prefix: <prefix>/events, /state, /availability",
                            metavar="TOPIC")
    mqtt_username: str = _opt(None, _text, "MQTT user (config file or TL_MQTT_USERNAME only)", cli=False)
    mqtt_password: str = _opt(None, _text, "MQTT password (config file or TL_MQTT_PASSWORD only)", cli=False)
    http: tuple = _opt(None, _address, "serve the status page, /health and /metrics on [HOST:]PORT "
                       "(host 127.0.0.1 if left out)", metavar="HOST:PORT")


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def read_toml(path):
    """Reads a TOML file into a dict, naming the file and the line of a syntax error."""
    path = Path(path)
    if tomllib is None:
        raise ConfigError("reading a TOML config needs Python 3.11+, or `pip install tomli` on Python 3.10")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config {path}: cannot read it ({e.strerror})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path}: not valid TOML ({e})") from e


def parse_options(raw, where="config", base_dir=None):
    """Checks and converts raw option values (from TOML, or CLI strings).

    Args:
      raw: {key: value}; None values are left out.
      where: what to call the origin in messages (the file name).
      base_dir: folder that relative file names are relative to.

    Returns:
      {key: parsed value}.

    Raises:
      ConfigError: naming an unknown key (with the closest known one) or a value of the wrong type.
    """
    out = {}
    for key, value in raw.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(FIELDS)}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        if value is None:
            continue
        try:
            value = FIELDS[key].metadata["parse"](key, value)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        if base_dir is not None and (key in PATH_KEYS or (key == "source" and _is_path(value))):
            value = str(Path(base_dir, value)) if not Path(value).is_absolute() else value
        out[key] = value
    return out


def _is_path(source):
    return not (source.isdigit() or "://" in source or source.lower().startswith("picamera"))


def build_config(*layers):
    """Merges parsed option layers (later ones win) over the defaults and checks the values.

    Raises:
      ConfigError: a value out of range (threshold outside 0..1, K > N, fps <= 0...).
    """
    merged = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    cfg = RunConfig(**merged)
    check_values(cfg)
    return cfg


def load_config(path=None, cli=None):
    """Reads a TOML file (if any), overrides it with CLI values, and returns a checked RunConfig."""
    layers = []
    if path is not None:
        layers.append(parse_options(read_toml(path), where=str(path), base_dir=Path(path).parent))
    layers.append(parse_options(cli or {}, where="command line"))
    return build_config(*layers)


def check_values(cfg):
    """Checks ranges that need no model; class names are checked against the model later."""
    check_numbers(cfg.threshold, cfg.thresholds, cfg.votes, cfg.open_seconds, cfg.lockout_seconds)
    positive = {"fps": cfg.fps, "status_seconds": cfg.status_seconds, "snapshot_keep": cfg.snapshot_keep,
                "threads": cfg.threads or 1, "capture": min(cfg.capture)}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} = {value}: must be more than 0")
    check_angles(cfg.open_angle, cfg.closed_angle)
    if cfg.roi is not None and (min(cfg.roi[2:]) <= 0 or min(cfg.roi[:2]) < 0):
        raise ConfigError(f"roi = {cfg.roi}: x, y must be 0 or more and w, h more than 0")


def policy_config(cfg, labels):
    """Builds the door policy's config from a RunConfig and the model's labels (checks class names)."""
    return make_policy_config(labels, cfg.allow, cfg.deny, cfg.ignore, cfg.threshold, cfg.thresholds,
                              cfg.votes, cfg.open_seconds, cfg.lockout_seconds)


def require_run(cfg):
    """Checks what `run` needs beyond valid values: a model, a source and an allowed class."""
    for key in ("model", "source"):
        if getattr(cfg, key) is None:
            raise ConfigError(f"no {key} given; pass --{key} or set {key} = ... in the config file")
    if not cfg.allow:
        raise ConfigError("no class opens the door; pass --allow CLASS or set allow = [\"dog\"] in the config file")
