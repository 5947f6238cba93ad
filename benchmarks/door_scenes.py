"""Door scenes built from pets/val and shift/, day and infrared night: what the door does with a model, visit by visit.

Builds each scene with `scene.build_door_scene` (6 visits of each class, one every 5 s at 10 fps, each
visitor a photo of its own walking in from a side), then scores the model on it with `tl-device score`
and the defaults a user gets, without and with `--motion` (plus a sweep of threshold, deny threshold, votes and lockout). Last,
it compares motion gates and the handling of gated frames on the same frames: one pass classifies
every frame, then the pure policy is replayed with each gate's motion flags (`tl.device.door.score.replay`).

    python benchmarks/door_scenes.py [--model runs/demo/model_int8.tflite]   # writes door_scenes.json and .md
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import scene

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SCENES = (("pets-day", "pets/val", False, 1), ("pets-night", "pets/val", True, 2),
          ("shift-day", "shift", False, 3), ("shift-night", "shift", True, 4))
SWEEP = ("--sweep", "threshold=0.3:0.95:0.05", "--sweep", "deny=0.8,0.99", "--sweep", "votes=2/4,3/5,4/6",
         "--sweep", "lockout=2,30")
GATES = ("average", "selective", "mog2", "knn")


def build(work, name, data, night, seed, per_class):
    """Builds a scene once (kept in `work` for the next run); returns its folder."""
    folder = work / name
    if not (folder / "truth.csv").is_file():
        info = scene.build_door_scene(DATA / data, folder, per_class=per_class, night_ir=night, seed=seed)
        print(f"{name}: {info}", flush=True)
    return folder


def score(folder, model, out, *extra):
    """Runs `tl-device score` on a scene; returns its JSON result."""
    cmd = [str(Path(sys.executable).with_name("tl-device")), "-q", "score", str(folder / "frames"),
           "--truth", str(folder / "truth.csv"), "--model", str(model), "--allow", "dog", "--json", str(out), *extra]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def all_scores(folder, model):
    """One pass of the door loop that classifies every frame; returns (records, policy config, visits)."""
    from tl.device.cli.score import Recorder
    from tl.device.door import config
    from tl.device.door.loop import run_door
    from tl.device.door.score import read_truth

    recorder = Recorder()
    cfg = config.load_config(None, {"model": str(model), "source": str(folder / "frames"), "allow": ("dog",),
                                    "door": "mock", "motion": False, "status_seconds": 3600.0})
    run_door(cfg, recorder=recorder)
    return recorder.records, recorder.policy_config, read_truth(folder / "truth.csv")


def motion_flags(folder, background, area=0.01, delta=20):
    """Each frame's motion flag under one background model, and the gate's cost per frame (ms)."""
    from tl.device.door.motion import MotionGate

    gate = MotionGate(area, delta, background=background)
    flags, spent = [], 0.0
    for i, path in enumerate(sorted((folder / "frames").iterdir())):
        image = cv2.imread(str(path))
        started = time.perf_counter()
        flags.append(gate.check(image, i / 10.0).changed >= area)
        spent += time.perf_counter() - started
    return flags, 1000 * spent / len(flags)


def compare_gates(folder, model, thresholds=(0.8, 0.6), lockout=2.0):
    """Replays the policy with every gate, gated frames held or repeated, open door watched or not.

    At a 2 s lockout: with the default 30 s, a denied visitor locks out the next visits of a 5 s porch and
    the door never opens, which would leave nothing to compare.
    """
    from tl.device.door import score as sc
    from tl.device.door.policy import DoorPolicy

    records, policy_config, visits = all_scores(folder, model)
    rows = []
    for background in GATES:
        flags, ms = motion_flags(folder, background)
        gated = [r._replace(moving=m) for r, m in zip(records, flags)]
        inside = [any(v.start_s <= r.ts < v.end_s for v in visits) for r in records]
        empty = [m for m, i in zip(flags, inside) if not i]
        for threshold in thresholds:
            cfg = sc.configure(policy_config, {"threshold": threshold, "lockout": lockout})
            for watch_open in (True, False):
                for repeat in (False, True):
                    DoorPolicy.repeat_gated = repeat
                    try:
                        events, classified = sc.replay(gated, cfg, 2.0, watch_open)
                    finally:
                        DoorPolicy.repeat_gated = False
                    s = sc.score_events(events, visits, ("dog",), 0.5, len(records), classified)
                    rows.append({"scene": folder.name, "background": background, "ms_per_frame": round(ms, 2),
                                 "moving_on_empty_porch": round(sum(empty) / max(1, len(empty)), 3),
                                 "threshold": threshold, "lockout_s": lockout, "watch_open": watch_open,
                                 "gated": "repeat" if repeat else "hold", "dogs_in_time": s["summary"]["in_time"],
                                 "dogs": s["summary"]["allowed_visits"],
                                 "wrong_opens": s["false_opens"] + s["summary"]["let_in"],
                                 "classified_share": s["classified_share"]})
    return rows


def scene_row(name, plain, gated):
    """The numbers of one scene, with and without --motion."""
    s, g = plain["summary"], gated["summary"]
    safe = [r for r in plain["sweep"] if r["false_opens"] + r["others_let_in"] == 0]
    best = max(safe, key=lambda r: (r["allowed_in_time"], r["threshold"])) if safe else None
    default = next(r for r in plain["sweep"] if r["default"])
    short = next(r for r in plain["sweep"] if (r["threshold"], r["deny"], r["votes"], r["lockout_s"]) ==
                 (default["threshold"], default["deny"], default["votes"], 2.0))
    return {"scene": name, "frames": plain["frames"], "dogs": s["allowed_visits"], "others": s["other_visits"],
            "dogs_in_time": s["in_time"], "dogs_late": s["late"], "dogs_missed": s["missed"],
            "others_let_in": s["let_in"], "false_opens": plain["false_opens"], "lockouts": plain["lockouts"],
            "motion_dogs_in_time": g["in_time"], "motion_wrong_opens": gated["false_opens"] + g["let_in"],
            "motion_classified_share": gated["classified_share"], "wall_s": plain["wall_s"],
            "lockout2_dogs_in_time": short["allowed_in_time"],
            "lockout2_wrong_opens": short["false_opens"] + short["others_let_in"],
            "best_safe_setting": None if best is None else f"{best['threshold']:.2f} {best['deny']:.2f} {best['votes']} {best['lockout_s']:g}s",
            "best_safe_in_time": None if best is None else best["allowed_in_time"]}


def markdown(result):
    """The result as Markdown."""
    lines = [f"# Door scenes ({result['model']}, defaults: threshold {result['threshold']}, votes {result['votes']}, "
             "open-set as the model carries it)", "",
             "Built by `benchmarks/scene.py` (6 visits of each class, one every 5 s, 10 fps, a 2.5 s visit walking in "
             "from a side; several porches, sizes and places; JPEG noise; night = IR rendering). Scored with "
             "`tl-device score`, without and with `--motion`.", "",
             "| scene | frames | dogs in time (0.5 s) | late | missed | others let in | false opens | lockouts "
             "| --motion: dogs in time | wrong opens | classified | lockout 2 s: dogs in time | wrong opens "
             "| best safe sweep setting: threshold deny votes lockout (dogs in time) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in result["scenes"]:
        lines.append(f"| {r['scene']} | {r['frames']} | {r['dogs_in_time']}/{r['dogs']} | {r['dogs_late']} | "
                     f"{r['dogs_missed']} | {r['others_let_in']}/{r['others']} | {r['false_opens']} | {r['lockouts']} | "
                     f"{r['motion_dogs_in_time']}/{r['dogs']} | {r['motion_wrong_opens']} | "
                     f"{r['motion_classified_share']:.0%} | {r['lockout2_dogs_in_time']}/{r['dogs']} | {r['lockout2_wrong_opens']} | "
                     f"{r['best_safe_setting']} ({r['best_safe_in_time']}) |")
    lines += ["", "## Motion gates and gated frames (same frames, policy replayed, lockout 2 s)", "",
              "The gate's default is the selective background, gated frames hold the vote window, the open door is "
              "not watched (`tl.device.door.motion`, `DoorPolicy.repeat_gated`): the same dogs in time and wrong "
              "opens as without gating, the fewest frames classified of the gates that never lose a still visitor "
              "(MOG2 classifies fewer because it absorbs a standing visitor in about 2 s: benchmarks/motion.md).", "",
              "| scene | background | ms/frame | moving on empty porch | threshold | watch open door | gated frames "
              "| dogs in time | wrong opens | classified |", "| --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
    for r in result["gates"]:
        lines.append(f"| {r['scene']} | {r['background']} | {r['ms_per_frame']} | {r['moving_on_empty_porch']:.0%} | "
                     f"{r['threshold']:.2f} | {'yes' if r['watch_open'] else 'no'} | {r['gated']} | "
                     f"{r['dogs_in_time']}/{r['dogs']} | {r['wrong_opens']} | {r['classified_share']:.0%} |")
    return "\n".join(lines) + "\n"


def _shown(path):
    path = path.resolve()
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=HERE.parent / "runs" / "demo" / "model_int8.tflite",
                        help="the model to score, with a dog class (default: what `make demo` trains)")
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "door-scenes", help="scenes and results")
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--gate-scenes", nargs="*", default=["shift-day", "shift-night"],
                        help="scenes on which gates and gated-frame handling are compared")
    parser.add_argument("--gates-only", action="store_true", help="keep the scene rows of --json, redo the gates")
    parser.add_argument("--json", type=Path, default=HERE / "door_scenes.json")
    parser.add_argument("--markdown", type=Path, default=HERE / "door_scenes.md")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model} not found: run `make demo` first, or pass --model")
    args.work.mkdir(parents=True, exist_ok=True)
    result = json.loads(args.json.read_text()) if args.gates_only else {"model": _shown(args.model), "scenes": []}
    gates = []
    for name, data, night, seed in SCENES:
        folder = build(args.work, name, data, night, seed, args.per_class)
        if not args.gates_only:
            plain = score(folder, args.model, args.work / f"{name}.json", *SWEEP)
            gated = score(folder, args.model, args.work / f"{name}-motion.json", "--motion")
            result.update(threshold=plain["threshold"], votes=plain["votes"])
            result["scenes"].append(scene_row(name, plain, gated))
            print(json.dumps(result["scenes"][-1]), flush=True)
        if name in args.gate_scenes:
            gates += compare_gates(folder, args.model)
    result["gates"] = gates
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.markdown.write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
