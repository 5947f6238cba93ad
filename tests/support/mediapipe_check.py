"""Reads models the way MediaPipe Tasks does; run by tests/test_metadata.py, possibly in a side environment.

MediaPipe pins numpy < 2 and protobuf < 5, so it often cannot share tl-edge's environment: this script
imports nothing of tl-edge and talks JSON. Usage:

    python mediapipe_check.py REQUEST.json

REQUEST: {"metadata": [model paths], "classify": [model paths], "images": "pixels.npy"} (uint8 N×H×W×3 RGB).
Prints {"metadata": {path: {"json": ..., "files": [...]}}, "classify": {path: [[[name, score], ...] per image]
or {"error": message}}}.
"""

import json
import sys

import numpy as np


def _metadata(path):
    from mediapipe.tasks.python.metadata import metadata

    displayer = metadata.MetadataDisplayer.with_model_file(path)
    return {"json": json.loads(displayer.get_metadata_json()), "files": displayer.get_packed_associated_file_list()}


def _classify(path, pixels):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path), max_results=-1)
    try:
        classifier = vision.ImageClassifier.create_from_options(options)
    except (RuntimeError, ValueError) as e:
        return {"error": str(e)}
    out = []
    with classifier:
        for x in pixels:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(x))
            heads = classifier.classify(image).classifications
            out.append([[(c.category_name, float(c.score)) for c in head.categories] for head in heads])
    return out


def main(request_path):
    with open(request_path) as f:
        request = json.load(f)
    pixels = np.load(request["images"]) if request.get("images") else np.zeros((0, 1, 1, 3), np.uint8)
    result = {"metadata": {p: _metadata(p) for p in request.get("metadata", [])},
              "classify": {p: _classify(p, pixels) for p in request.get("classify", [])}}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
