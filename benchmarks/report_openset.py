"""Markdown for benchmarks/openset.py's results; run alone, it re-renders openset.md from openset.json."""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _pct(x):
    return f"{100 * x:.1f} %"


def write_report(r, path):
    """Writes the Markdown report to `path`; returns its text."""
    lines = [
        "# Open-set rejection and enrolment",
        "",
        f"Measured {r['date']} on {r['machine']}. Command: `python benchmarks/openset.py` (trains `tl-train "
        "../shared/data/pets/train --val-dir ../shared/data/pets/val`, converts with `tl-convert RUN --all "
        "--no-openset` and `tl-convert RUN --all --embedding`, then runs everything below through tl-device's code).",
        "",
        "## Unknowns never open the door",
        "",
        "Door policy at its defaults: allow dog, threshold 0.80, 3 of 5 frames. A frame *would open* when it is "
        "called dog at >= 0.80 and not rejected (a visitor standing still repeats it).",
        "",
        "| open-set | pets/val rejected | pets/val accuracy | unknown frames rejected | unknown frames that would open |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in r["sweep"]:
        q = row["quantile"]
        name = {"off": "off", "softmax": "max-softmax fallback (q 0.98)"}.get(q) or f"embedding, q {q:g}"
        if q == 0.98:
            name = f"**{name} (default)**"
        lines.append(f"| {name} | {_pct(row['val_rejected'])} | {_pct(row['val_accuracy'])} | "
                     f"{row['unknown_rejected']}/{row['unknowns']} | {', '.join(row['would_open']) or 'none'} |")
    on, off = (r["replays"][k] for k in ("True", "False"))
    lines += [
        "",
        f"Door replay of all {len(r['unknowns'])} unknown frames, 2 s each at 10 fps (`tl-device run` code path, "
        f"door none): open-set **on**: {_opens(on)}; open-set off: {_opens(off)}. Stop event: "
        f"`{ {k: v for k, v in on[-1].items() if k not in ('ts', 'frame', 'event', 'label', 'score')} }`.",
        "",
        "| unknown frame | int8 says | distance to its class | radius (q 0.98, + int8 shift) |",
        "| --- | --- | ---: | ---: |",
    ]
    radii = r["openset_convert"]["int8"]["radii"]
    for name, (label, score, dist) in r["unknowns"].items():
        lines.append(f"| {name} | {label} {score:.2f} | {dist:.3f} | {radii[label]:.3f} |")
    lines += ["", "In-distribution Coral photos (cats, dogs): " + "; ".join(
        f"{n} {lab} {s:.2f} d={d:.3f} ({'known' if d <= radii[lab] else 'unknown'})"
        for n, (lab, s, d) in r["known"].items()) + "."]
    c1 = next(iter(r["frame_cost"].values()))
    lines += ["", "## Per-frame cost (640×480 porch frame with a dog, int8)", "",
              "| threads | " + " | ".join(c1) + " | added per frame |", "| --- |" + " ---: |" * (len(c1) + 1)]
    for t, c in r["frame_cost"].items():
        keys = list(c)
        added = c[keys[1]] / c[keys[0]] - 1
        lines.append(f"| {t} | " + " | ".join(f"{v:.2f} ms" for v in c.values()) + f" | **{100 * added:+.1f} %** |")
    e = r["enrolment"]
    lines += ["", "## Enrolment", "",
              f"`tl-device enroll --model embedder_int8.tflite --name rex <{e['photos']} pets/val dog photos> "
              f"--gallery gallery.npz`: **{e['wall_s']:.2f} s** wall (Python start-up included), "
              f"{e['enroll_s']:.2f} s decoding + embedding + writing. Output:", "", "```", *e["output"], "```",
              "(Ten photos of ten *different* dogs: the similarities are low, as they should be; photos of one pet "
              "score higher.)", ""]
    i = r.get("identity")
    if i:
        lines += [f"Pseudo-identity (no photo set of one pet is available): 10 augmented views (crop 70-95 %, flip, "
                  f"brightness ±25 %) of one pets/val dog enrolled; suggested threshold **{i['threshold']:.2f}**. Ten "
                  f"other views of it score {i['positives'][0]:.2f}-{i['positives'][1]:.2f} (accepted "
                  f"{_pct(i['true_accept'])}); the {i['negatives_n']} other val dogs score {i['negatives'][0]:.2f}-"
                  f"{i['negatives'][1]:.2f} (accepted {_pct(i['false_accept'])}). Views of one photo are easier than "
                  "a pet in new poses and light: treat this as a check of the mechanism, not of real-life accuracy.", ""]
    one, two, lat = r["convert_one"], r["convert_two"], r["latency_1thread"]
    lines += ["## int8 with the second output (issue 4's numbers)", "",
              "| model | size | accuracy | agreement with Keras | ms/invoke (1 thread, interleaved) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for tag, rep in (("one", one), ("two", two)):
        for v in ("float32", "int8"):
            x = rep[v]
            lines.append(f"| {v}, {'one output' if tag == 'one' else 'scores + embedding'} | {x['bytes'] / 1e6:.2f} MB | "
                         f"{_pct(x['accuracy'])} | {_pct(x['agreement'])} | {lat[f'{tag} {v}']:.2f} |")
    ratio = lat["two int8"] / lat["two float32"]
    emb = r["embedder"]["int8"]
    lines += ["", f"- int8/float32 latency ratio with two outputs: **{ratio:.2f}** (one output: "
              f"{lat['one int8'] / lat['one float32']:.2f}).",
              f"- embedder_int8.tflite: {emb['bytes'] / 1e6:.2f} MB, cosine to the float embedding median "
              f"{emb['cosine_to_float_median']:.3f} (min {emb['cosine_to_float_min']:.3f}) on {emb['images']} images.",
              f"- tl-convert --all: {r['convert_s']['one_output']:.0f} s one output; "
              f"{r['convert_s']['two_outputs_and_embedder']:.0f} s with statistics, embedding output and embedder."]
    text = "\n".join(lines) + "\n"
    Path(path).write_text(text)
    return text


def _opens(events):
    opens = [e for e in events if e["event"] == "door_open"]
    return f"{len(opens)} door_open" + (f" (frames {', '.join(str(e['frame']) for e in opens)})" if opens else "")


def main():
    """Re-renders benchmarks/openset.md from benchmarks/openset.json (no measuring)."""
    source = HERE / "openset.json"
    if source.is_file():
        write_report(json.loads(source.read_text()), HERE / "openset.md")


if __name__ == "__main__":
    main()
