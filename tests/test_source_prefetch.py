"""Replays decode ahead in a background thread: same frames, errors and closing carried across the thread."""

import threading

import numpy as np
import pytest

from tests.support.scenes import timeline, write_frames, write_video
from tl.device.hw.frames import prefetched
from tl.device.hw.sources import FolderSource, VideoSource, open_source, prefetch_depth


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "frame-prefetch"]


def test_prefetched_keeps_order_and_runs_items_in_another_thread():
    where = []

    def items():
        for i in range(5):
            where.append(threading.current_thread())
            yield i

    assert list(prefetched(items(), depth=2)) == [0, 1, 2, 3, 4]
    assert where and all(t is not threading.current_thread() for t in where)
    assert not _prefetch_threads()


def test_prefetched_raises_the_threads_error_at_its_item():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(items(), depth=1):
            got.append(item)
    assert got == [1, 2]
    assert not _prefetch_threads()


def test_closing_early_stops_the_thread_and_closes_the_items():
    closed = threading.Event()

    def items():
        try:
            yield from range(10**6)
        finally:
            closed.set()

    ahead = prefetched(items(), depth=2)
    assert next(ahead) == 0 and next(ahead) == 1
    ahead.close()
    assert closed.is_set()
    assert not _prefetch_threads()


def test_folder_with_and_without_prefetch_yields_the_same_frames(tmp_path):
    folder = write_frames(tmp_path / "frames", timeline(("background", 3), ("dog", 3)))
    plain = list(FolderSource(folder, fps=5, prefetch=0).frames())
    ahead = list(FolderSource(folder, fps=5, prefetch=2).frames())
    assert [(f.index, f.ts) for f in ahead] == [(f.index, f.ts) for f in plain]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(ahead, plain))


def test_closing_the_source_mid_replay_stops_its_prefetch(tmp_path):
    path = write_video(tmp_path / "porch.avi", ["background"] * 12, fps=10)
    with open_source(str(path), fps=None) as source:
        assert isinstance(source, VideoSource) and source.prefetch > 0
        frames = source.frames()
        assert next(frames).index == 0
        assert _prefetch_threads()
    assert not _prefetch_threads()
    source.close()  # safe twice


def test_prefetch_only_when_a_core_is_left_over_after_the_model():
    assert prefetch_depth(2, cores=4) == 2  # a Pi 4/5 with 2 interpreter threads
    assert prefetch_depth(2, cores=2) == 0  # every core runs the model: a decode thread would slow it
    assert prefetch_depth(4, cores=4) == 0
    assert prefetch_depth(None, cores=8) == 0  # the interpreter takes every core
