"""Parts of benchmarks/training.py: the embedding pass on local Ray clusters, and the driver's memory on a big list.

Not run on its own; training.py calls `ray_rows` and `memory_rows` and renders them with `scaling_lines`.
"""

import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.support.raycluster: the same cluster the tests start

MEMORY_SIZE = 96  # px: the memory check is about the list, not the backbone's resolution


def ray_rows(measure, common, tmp, extractors):
    """tl-train --ray on 1 and 2 local nodes (one CPU each), each with an empty embedding cache.

    Args:
      measure: training.measure (runs tl-train in a child process, returns its row).
      common: tl-train arguments shared with the plain rows (without --cache-dir).
      tmp: scratch folder.
      extractors: the converted-extractor folder to copy into each cache (no conversion is timed).
    """
    from tests.support.raycluster import LocalCluster

    rows = {}
    for nodes in (1, 2):
        cache = Path(tmp) / f"ray{nodes}-cache"
        shutil.copytree(extractors, cache / "extractors")
        with LocalCluster(nodes=nodes, logs=Path(tmp) / f"ray{nodes}-logs") as cluster:
            t0 = time.perf_counter()
            row = measure("tl-train", [*common, "--cache-dir", cache, "--out", Path(tmp) / f"ray{nodes}",
                                       "--ray", cluster.address], env=cluster.env)
            row["cluster_s"] = time.perf_counter() - t0
        rows[f"Ray, {nodes} local node{'s' if nodes > 1 else ''}"] = row
    return rows


def write_images(folder, n, seed):
    """n small noise JPEGs in two class folders (160×120: decoding is cheap, the list is what grows)."""
    import cv2

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = folder / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        cv2.imwrite(str(d / f"{i:06d}.jpg"), img)


def embed_child(folder, weights, cache):
    """In a fresh process: the driver's embedding pass (scan, hash, look up, compute, store) over a folder."""
    from tl.device.data.dataset import scan_folder
    from tl.device.model.contract import InputSpec
    from tl.train.backbones import BackboneSpec, build_backbone
    from tl.train.embeddings import EmbeddingCache, embed_samples
    from tl.train.litert_embed import make_extractor

    spec = BackboneSpec("mobilenet_v2", 1.0, MEMORY_SIZE, weights)
    extract, _ = make_extractor(build_backbone(spec), spec, "litert", cache)
    samples = scan_folder(folder).samples
    t0 = time.perf_counter()
    emb = embed_samples(samples, ("orig",), extract, InputSpec(MEMORY_SIZE, MEMORY_SIZE), EmbeddingCache(cache, "mem"))
    return {"images": len(samples), "computed": emb.misses, "embed_s": time.perf_counter() - t0,
            "result_mb": emb.vectors["orig"].nbytes / 2**20}


def memory_rows(measure, tmp, weights, base_n):
    """Peak memory of the embedding pass on a synthetic list of base_n images and on one 10× larger."""
    rows = {}
    cache = Path(tmp) / "mem-cache"
    write_images(Path(tmp) / "mem-warmup", 4, seed=0)
    measure("embed", [Path(tmp) / "mem-warmup", weights, cache])  # converts the extractor: not in the rows' peaks
    for n in (base_n, 10 * base_n):
        folder = Path(tmp) / f"mem{n}"
        write_images(folder, n, seed=n)
        rows[f"{n} images"] = measure("embed", [folder, weights, cache])
        shutil.rmtree(folder)
    return rows


def scaling_lines(plain, tf_row, ray, memory):
    """The markdown of the scaling and memory tables."""
    lines = [
        "", "## The embedding pass: plain path and a local Ray cluster", "",
        "Images (image × view) embedded per second by each cold run above and by `tl-train --ray` on a",
        "Ray cluster started on this machine (`ray start`, one CPU per node), each with an empty embedding",
        "cache and the converted extractor already cached. The Ray figures include joining the cluster and",
        "starting the actors. **On this 2-core machine the nodes share the same two cores, so the table",
        "shows Ray's overhead, not a speed-up**: more nodes only help where they bring cores of their own.", "",
        "| path | embedder | nodes · workers | embedded | embed pass | images/s | images per node |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in [("plain (LiteRT)", plain), ("plain (TensorFlow, --embedder tf)", tf_row), *ray.items()]:
        c = r.get("cluster") or {}
        where = f"{c['nodes']} · {c['workers']}" if c else "1 · 1"
        per_node = ", ".join(str(v) for v in c.get("images_per_node", {}).values()) or "-"
        lines.append(f"| {name} | {r['embedder']} | {where} | {r['cache_misses']} | {r['embed_s']:.1f} s | "
                     f"{r['images_per_s']:.0f} | {per_node} |")
    (small, big) = memory.values()
    lines += [
        "", "## Driver memory on a 10× longer image list", "",
        f"The embedding pass alone (scan, hash, cache look-up, LiteRT at {MEMORY_SIZE} px, store) in a fresh",
        "process over synthetic 160×120 JPEGs, original view only. The image list is streamed: a bounded",
        "number of images is decoded ahead of the extractor, and only paths and hashes are listed. What",
        "grows is the result itself (one 1280-float vector per image) and the list of paths.", "",
        "| images | peak memory (process) | result vectors | embed pass |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for r in (small, big):
        lines.append(f"| {r['images']} | {r['peak_rss_mb']:.0f} MB | {r['result_mb']:.0f} MB | {r['embed_s']:.1f} s |")
    growth = big["peak_rss_mb"] - small["peak_rss_mb"]
    lines += ["", f"10× the images: peak memory {growth:+.0f} MB, of which {big['result_mb'] - small['result_mb']:.0f} MB "
              "are the extra result vectors."]
    return lines


def agreement(lite_cache, tf_cache):
    """How far the LiteRT embeddings are from TensorFlow's, over every entry both cold runs cached."""
    lite = {p.relative_to(lite_cache / "embeddings"): p for p in (lite_cache / "embeddings").rglob("*.npy")}
    worst_abs, worst_excess, cosines = 0.0, -np.inf, []
    for key, path in lite.items():
        a, b = np.load(path), np.load(tf_cache / "embeddings" / key)
        worst_abs = max(worst_abs, float(np.abs(a - b).max()))
        worst_excess = max(worst_excess, float((np.abs(a - b) - 1e-4 * np.abs(b)).max()))  # vs rtol 1e-4
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
    return {"vectors": len(lite), "max_abs_diff": worst_abs, "max_abs_beyond_rtol_1e-4": worst_excess,
            "min_cosine": min(cosines)}


def agreement_lines(agree, lite_row, tf_row):
    return [
        "", "## LiteRT against TensorFlow", "",
        f"Over all {agree['vectors']} embeddings both cold runs cached (224 px, every view): largest "
        f"absolute difference {agree['max_abs_diff']:.2e}, largest beyond `rtol=1e-4` {agree['max_abs_beyond_rtol_1e-4']:.2e} "
        f"(the documented tolerance is `rtol=atol=1e-4`, `tl.train.litert_embed.TOLERANCE`), lowest cosine "
        f"{agree['min_cosine']:.7f}. Held-out accuracy: {100 * lite_row['val_accuracy']:.1f} % with LiteRT, "
        f"{100 * tf_row['val_accuracy']:.1f} % with TensorFlow.",
    ]
