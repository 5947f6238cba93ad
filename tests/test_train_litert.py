"""The LiteRT/XNNPACK embedder: the same embeddings as TensorFlow, converted once per backbone and weights."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import V2_WEIGHTS
from tl.train import litert_embed as le
from tl.train.backbones import BackboneSpec

SPEC = BackboneSpec("mobilenet_v2", 1.0, 96, str(V2_WEIGHTS))
ARGS = ["--image-size", "96", "--weights", str(V2_WEIGHTS), "--epochs", "20", "--views", "none"]


@pytest.fixture(scope="module")
def converted(imagenet_weights, tmp_path_factory):
    """The pooled backbone, and the cache root its LiteRT extractor was converted into."""
    from tl.train.backbones import build_backbone

    root = tmp_path_factory.mktemp("litert")
    pooled = le.pooled_model(build_backbone(SPEC))
    le.converted_extractor(pooled, SPEC, root)
    return pooled, root


def _images(colour_data):
    from tl.device.data.dataset import scan_folder
    from tl.device.model.contract import InputSpec, prepare_image
    from tl.device.model.image import load_image

    photos = [prepare_image(load_image(s.path), InputSpec(96, 96)) for s in scan_folder(colour_data[0]).samples[::4]]
    noise = np.random.default_rng(0).integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)  # textures, not flat colour
    return np.concatenate([np.stack(photos), noise])


def test_litert_embeddings_agree_with_tensorflow_within_the_tolerance(converted, colour_data):
    pooled, root = converted
    images = _images(colour_data)
    expected = le.tf_extractor(pooled)(images)
    got = le.LiteRTExtractor(le.converted_extractor(pooled, SPEC, root))(images)
    assert got.shape == expected.shape == (len(images), 1280) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, **le.TOLERANCE)


def test_the_extractor_is_converted_once_and_keyed_by_the_weights(converted, monkeypatch):
    pooled, root = converted
    path = le.converted_extractor(pooled, SPEC, root)
    monkeypatch.setattr(le, "convert", lambda *a: pytest.fail("converted again"))
    assert le.converted_extractor(pooled, SPEC, root) == path  # cached: no second conversion
    other = [w + 0.01 if i == 0 else w for i, w in enumerate(pooled.get_weights())]
    original = pooled.get_weights()
    try:
        pooled.set_weights(other)
        assert le.extractor_key(SPEC, pooled) != path.stem  # other weights, other file
    finally:
        pooled.set_weights(original)
    assert le.extractor_key(SPEC, pooled) == path.stem


@pytest.mark.parametrize(("asked", "weights", "gpus", "chosen"), [
    ("auto", "imagenet", 0, "litert"), ("auto", "imagenet", 1, "tf"), ("auto", None, 0, "tf"),
    ("tf", "imagenet", 0, "tf"), ("litert", "imagenet", 1, "litert"),
])
def test_auto_chooses_litert_on_a_cpu_and_tensorflow_on_a_gpu(asked, weights, gpus, chosen):
    assert le.choose_engine(asked, BackboneSpec("mobilenet_v2", 1.0, 96, weights), gpus) == chosen


def test_held_out_accuracy_is_the_same_with_either_embedder(converted, colour_data, tmp_path):
    from tl.train.cli import main

    _, root = converted
    train, val = colour_data
    records = {}
    for embedder in ("tf", "litert"):
        cache = tmp_path / embedder
        if embedder == "litert":
            (cache / "extractors").mkdir(parents=True)
            for f in (root / "extractors").iterdir():
                (cache / "extractors" / f.name).write_bytes(f.read_bytes())
        out = tmp_path / f"run-{embedder}"
        result = CliRunner().invoke(main, [str(train), "--out", str(out), "--val-dir", str(val), "--cache-dir",
                                           str(cache), "--embedder", embedder, *ARGS], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"computed ({embedder})" in result.output
        records[embedder] = json.loads((out / "train.json").read_text())
    tf_rec, lite = records["tf"], records["litert"]
    assert lite["embedding"]["name"] == "litert" and lite["embedding"]["extractor"].endswith(".tflite")
    assert tf_rec["embedding"]["name"] == "tf" and tf_rec["embedding"]["extractor"] is None
    assert lite["metrics"]["val"]["accuracy"] == tf_rec["metrics"]["val"]["accuracy"]
    assert lite["metrics"]["val"]["confusion"] == tf_rec["metrics"]["val"]["confusion"]
