"""`edge-fas inspect`: the summary of real session folders and librealsense recordings."""
import json

import pytest

from edge_fas.cli import main
from edge_fas.drivers.session import SessionWriter
from edge_fas.drivers.summary import summarize
from edge_fas.errors import RecordingError
from edge_fas.sim.rig import Rig


def stereo(laser, exposure=8500, auto=0):
    return {"exposure_us": exposure, "gain": 16, "auto_exposure": auto, "laser_power": laser}


def write_session(path, takes, rig):
    """takes: [(species, [sensor dict per frame], counter step)]."""
    with SessionWriter(path, device=rig.device, calibration=rig.calibration, site="lobby", domain="lobby") as w:
        for k, (species, sensors, step) in enumerate(takes):
            w.begin_take(species=species, subject_id=f"S{k}", consent=True)
            for n, sensor in enumerate(sensors):
                f = rig.render(species, k, n / 30)
                f.timestamps = {m: 1000.0 * k + 33.3 * n for m in ("rgb", "depth", "ir")}
                f.counters = {m: step * n for m in ("rgb", "depth", "ir")}
                f.meta["sensor"] = {"depth": sensor, "ir": sensor}
                w.write(f)
            w.end_take()
    return path


@pytest.fixture(scope="module")
def rig():
    return Rig("cefa", seed=3, width=160, height=120)


def test_a_clean_session_is_summarised_without_warnings(tmp_path, rig, capsys):
    path = write_session(tmp_path / "clean", [("bona_fide", [stereo(150)] * 4, 1), ("print", [stereo(150)] * 4, 1)], rig)
    s = summarize(path)
    assert s["frames"] == 8 and [t["species"] for t in s["takes"]] == ["bona_fide", "print"]
    assert s["streams"]["depth"] == {"size": [160, 120], "dtype": "uint16", "channels": 1, "format": "png"}
    t = s["takes"][0]
    assert t["fps"] == pytest.approx(30.0, rel=0.01) and t["duration_s"] == pytest.approx(0.1, abs=1e-3)
    assert t["dropped"] == {"rgb": 0, "depth": 0, "ir": 0}
    assert s["sensor"]["depth"]["laser_power"] == {"min": 150.0, "median": 150.0, "max": 150.0, "n": 8}
    assert s["warnings"] == []
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 warnings" in out and "laser_power 150" in out and "bona_fide" in out


def test_a_setting_that_separates_the_labels_drops_and_drift_are_warned(tmp_path, rig, capsys):
    takes = [("bona_fide", [stereo(150)] * 3, 1),
             ("bona_fide", [stereo(150, e) for e in (8500, 9000, 12000)], 1),  # exposure moved in the take
             ("replay", [stereo(0)] * 3, 2)]  # emitter off for the attack, and every other frame dropped
    path = write_session(tmp_path / "confounded", takes, rig)
    s = summarize(path)
    w = "\n".join(s["warnings"])
    assert "depth laser_power separates the labels: bona fide takes 150, attack takes 0" in w
    assert "ir laser_power separates the labels" in w
    assert "exposure_us separates" not in w  # 8500-12000 against 8500 overlap
    assert "take 0002: depth exposure_us moved during the take (8500 to 12000)" in w
    assert s["takes"][2]["dropped"] == {"rgb": 2, "depth": 2, "ir": 2} and "take 0003: frames dropped" in w
    assert main(["inspect", str(path), "--json"]) == 1  # warnings: a script can gate on the exit status
    assert json.loads(capsys.readouterr().out)["warnings"] == s["warnings"]


def test_exposure_counts_as_a_setting_only_where_the_operator_fixed_it(tmp_path, rig):
    fixed = [("bona_fide", [stereo(150, 8500)] * 2, 1), ("print", [stereo(150, 20000)] * 2, 1)]
    w = summarize(write_session(tmp_path / "manual", fixed, rig))["warnings"]
    assert any("depth exposure_us separates the labels: bona fide takes 8500, attack takes 20000" in x for x in w)
    # under auto-exposure the camera follows the scene (as it will at the site): neither a confound nor a
    # setting that moved
    auto = [("bona_fide", [stereo(150, e, auto=1) for e in (8500, 12000)], 1),
            ("print", [stereo(150, 20000, auto=1)] * 2, 1)]
    assert summarize(write_session(tmp_path / "auto", auto, rig))["warnings"] == []


def test_missing_images_and_missing_settings_are_counted_not_fatal(tmp_path, rig):
    path = write_session(tmp_path / "damaged", [("bona_fide", [stereo(150)] * 3, 1)], rig)
    (path / "takes" / "0001" / "ir" / "000001.png").unlink()
    lines = (path / "takes" / "0001" / "frames.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["meta"].pop("sensor")
    lines[2] = lines[2].replace('"ir/000002.png"', '"../../../outside.png"')  # a path out of the session
    (tmp_path / "outside.png").write_bytes((path / "takes" / "0001" / "ir" / "000000.png").read_bytes())
    (path / "takes" / "0001" / "frames.jsonl").write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    s = summarize(path)
    w = "\n".join(s["warnings"])
    assert "take 0001: 2 unreadable frames, e.g. frame 1: no ir image" in w
    assert "frame 2: no ir image" in s["takes"][0]["problems"][1]
    assert "take 0001: 1 of 3 frames carry no sensor settings" in w


def test_not_a_recording_names_the_fix(tmp_path):
    with pytest.raises(RecordingError, match="does not exist"):
        summarize(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RecordingError, match="session folder"):
        summarize(tmp_path / "notes.txt")
    assert main(["inspect", str(tmp_path / "nothing")]) != 0


def test_a_librealsense_recording_is_played_once_for_its_summary(tmp_path, rig):
    pytest.importorskip("pyrealsense2")
    from edge_fas.drivers.realsense import write_db3

    frames = []
    for n in range(3):
        f = rig.render("bona_fide", 0, n / 30)
        f.timestamps = {m: 33.3 * n for m in ("rgb", "depth", "ir")}
        f.counters = {m: n for m in ("rgb", "depth", "ir")}
        f.meta["sensor"] = {"rgb": {"exposure_us": 156, "gain": 64, "auto_exposure": 1, "white_balance_k": 4600},
                            "depth": stereo(150, 8500 + 100 * n), "ir": stereo(150, 8500 + 100 * n)}
        frames.append(f)
    path = tmp_path / "lobby.db3"
    assert write_db3(path, frames) == 3
    s = summarize(path)
    assert s["format"] == "db3 recording" and s["frames"] == 3 and s["calibration"]
    assert s["device"]["serial"] == rig.device.serial
    assert s["sensor"]["depth"]["exposure_us"] == {"min": 8500.0, "median": 8600.0, "max": 8700.0, "n": 3}
    assert s["sensor"]["rgb"]["white_balance_k"]["median"] == 4600.0
    assert s["streams"]["ir"]["size"] == [160, 120]
