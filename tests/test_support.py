"""The test helpers themselves: synthetic scenes differ, tiny models learn them, the broker restarts."""

import socket

import numpy as np
import pytest

from tests.support.mqtt import NEEDS_MOSQUITTO, Broker, Subscriber
from tests.support.openset import closeup
from tests.support.scenes import SCENE_LABELS, make_scene


def test_scene_visitors_differ_from_background():
    rng = np.random.default_rng(1)
    empty, dog, raccoon = (make_scene(k, rng).astype(float).mean(axis=(0, 1)) for k in SCENE_LABELS)
    assert np.abs(dog - empty).max() > 20
    assert np.abs(raccoon - empty).max() > 20


def test_tiny_models_classify_their_scenes(tiny_models):
    from tl.device.model.classifier import Classifier

    rng = np.random.default_rng(7)
    for name in ("tiny_int8", "tiny_float"):
        classifier = Classifier(tiny_models[name])
        for label, kind in enumerate(SCENE_LABELS):
            for _ in range(5):
                scores = classifier.classify_frame(make_scene(kind, rng))
                assert int(np.argmax(scores)) == label, (name, kind, scores)
                assert scores[label] > 0.7, (name, kind, scores)


def test_strangers_are_not_the_trained_visitors():
    rng = np.random.default_rng(3)
    fox = closeup("fox", rng).astype(float).mean(axis=(0, 1))
    dog = closeup("dog", rng).astype(float).mean(axis=(0, 1))
    assert np.abs(fox - dog).max() > 20


@NEEDS_MOSQUITTO
def test_broker_starts_restarts_and_stops(tmp_path):
    b = Broker(tmp_path / "b").start()
    try:
        sub = Subscriber(b.port, topics=("t/#",), client_id="keeper")
        b.stop()
        b.start()
        sub.subscribed.clear()
        sub.wait_for(lambda m: True)
        import paho.mqtt.publish as publish

        publish.single("t/x", "after restart", qos=1, hostname="127.0.0.1", port=b.port)
        assert sub.wait_for(lambda m: m)[0][:2] == ("t/x", "after restart")
        sub.close()
    finally:
        b.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", b.port), timeout=0.5)
