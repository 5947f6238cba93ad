"""The enrolment gallery: names, the npz round trip, matching, the embedder check, atomic writes."""

import numpy as np
import pytest

from tl.device.data import atomic
from tl.device.errors import ConfigError, DataError, ModelError
from tl.device.recognition import gallery as gal
from tl.device.recognition.openset import normalise

DIM = 8


def unit(*values):
    v = np.zeros(DIM, np.float32)
    v[: len(values)] = values
    return normalise(v)


def make_gallery():
    g = gal.Gallery("abc123", DIM, "embedder_int8.tflite")
    gal.add_identity(g, "rex", unit(1, 0), 0.9, ["a.jpg", "b.jpg"], {"min": 0.93, "median": 0.95, "max": 0.97})
    gal.add_identity(g, "max", unit(0, 1), 0.8, ["c.jpg"], {})
    return g


@pytest.mark.parametrize("name", ["rex", "Rex_2", "luna-the-cat", "9lives", "x" * 64])
def test_good_names(name):
    assert gal.check_name(name) == name


@pytest.mark.parametrize("name", ["../rex", "rex/1", "rex\\1", "..", ".rex", "rex.npz", "a b", "", "x" * 65, "rëx"])
def test_names_that_could_be_paths_are_refused(name):
    with pytest.raises(ConfigError, match="not allowed"):
        gal.check_name(name)


def test_round_trip_keeps_identities_prototypes_and_thresholds(tmp_path):
    g = make_gallery()
    gal.add_identity(g, "rex", unit(1, 0.2), 0.85, ["night.jpg"], {"min": 0.9, "median": 0.92, "max": 0.94})
    path = gal.save_gallery(tmp_path / "gallery.npz", g)
    back = gal.load_gallery(path)
    assert (back.embedding_id, back.dim, back.embedder) == ("abc123", DIM, "embedder_int8.tflite")
    assert list(back.identities) == ["rex", "max"]
    rex = back.identities["rex"]
    assert rex.prototypes.shape == (2, DIM) and rex.photos == 3 and rex.threshold == 0.85
    assert rex.sources == ["a.jpg", "b.jpg", "night.jpg"] and rex.similarity["min"] == 0.9
    assert np.allclose(rex.prototypes[1], unit(1, 0.2))


def test_a_gallery_with_any_file_name_is_written_where_asked(tmp_path):
    path = gal.save_gallery(tmp_path / "pets.gallery", make_gallery())  # np.savez would add .npz to a name
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["pets.gallery"]
    assert list(gal.load_gallery(path).identities) == ["rex", "max"]


def test_match_picks_the_identity_with_the_best_margin():
    g = make_gallery()
    m = g.match(unit(1, 0.1))
    assert m.name == "rex" and m.ok and m.similarity == pytest.approx(0.995, abs=1e-3)
    m = g.match(unit(0.3, 1), names=["rex"])  # only rex considered: it does not pass
    assert m.name == "rex" and not m.ok
    assert g.match(unit(0.3, 1), names=["rex"], threshold=0.2).ok  # the run's override
    # The nearest prototype of an identity counts: a second (night) prototype helps.
    gal.add_identity(g, "rex", unit(0, 0, 1), 0.9, ["night.jpg"], {})
    assert g.match(unit(0, 0, 1), names=["rex"]).ok


def test_another_embedder_is_refused_with_both_ids():
    g = make_gallery()
    g.check_embedder("abc123", DIM, "m.tflite", "g.npz")
    with pytest.raises(ModelError, match="abc123.*fff999.*do not") as e:
        g.check_embedder("fff999", DIM, "m.tflite", "g.npz")
    assert "enrol again" in str(e.value)
    with pytest.raises(ModelError):
        g.check_embedder("abc123", DIM + 1, "m.tflite", "g.npz")


def test_missing_and_damaged_galleries_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="does not exist; enrol a pet first: tl-device enroll"):
        gal.load_gallery(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="damaged or not a tl-edge gallery"):
        gal.load_gallery(tmp_path / "bad.npz")


def test_remove_and_require_name_the_enrolled_identities():
    g = make_gallery()
    gal.remove_identity(g, "max", "g.npz")
    assert list(g.identities) == ["rex"]
    with pytest.raises(ConfigError, match="no such identity.*enrolled: rex"):
        gal.remove_identity(g, "max", "g.npz")
    with pytest.raises(ConfigError, match="luna.*enrolled: rex.*--name luna"):
        g.require(["rex", "luna"], "g.npz")


def test_a_failed_write_leaves_the_old_gallery_whole(tmp_path, monkeypatch):
    path = gal.save_gallery(tmp_path / "gallery.npz", make_gallery())
    before = path.read_bytes()
    g = gal.load_gallery(path)
    gal.add_identity(g, "luna", unit(0, 0, 1), 0.9, ["l.jpg"], {})

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", disk_full)
    with pytest.raises(OSError):
        gal.save_gallery(path, g)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.npz"]  # no temp file left behind


def test_listing(tmp_path):
    lines = gal.describe_gallery(make_gallery())
    assert lines[0].startswith("embedder abc123 (embedder_int8.tflite, 8-d); 2 identities")
    assert "rex: 2 photo(s), 1 prototype(s), threshold 0.90; enrolment similarity 0.93..0.97" in lines[1]
