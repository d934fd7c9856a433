"""The benchmark helpers that decide whether two score files may be compared at all."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_demo  # noqa: E402

from edge_fas.sim import fingerprint  # noqa: E402


def _report(folder: Path, data: str, **meta) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"meta": {"data": data, **meta}}))


def test_scores_of_another_rig_are_refused(tmp_path):
    # a change to edge_fas.sim re-renders every scene; scores of the old rig have the same species and counts,
    # so only the recorded fingerprint tells that they are other scenes
    here = f"synthetic rig {fingerprint()}, domains rand_heldout (val split, 900 per domain, seed 3, rig 640x480)"
    _report(tmp_path / "now" / "seed3", here)
    _report(tmp_path / "now" / "seed4", here)
    bench_demo.check_rendered_by_this_rig(tmp_path / "now")
    _report(tmp_path / "mixed" / "seed3", here)
    _report(tmp_path / "mixed" / "seed4", here.replace(fingerprint(), "0123456789abcdef"))
    with pytest.raises(SystemExit, match="0123456789abcdef.*bench_demo.py"):
        bench_demo.check_rendered_by_this_rig(tmp_path / "mixed")
    with pytest.raises(SystemExit, match="no seed"):
        bench_demo.check_rendered_by_this_rig(tmp_path / "empty")


def test_the_rig_field_is_read_before_the_data_text(tmp_path):
    # eval's reports carry meta.rig; the field wins over a data text that names another rig or none
    _report(tmp_path / "field" / "seed3", "synthetic rig 0123456789abcdef, old words", rig=fingerprint())
    bench_demo.check_rendered_by_this_rig(tmp_path / "field")
    _report(tmp_path / "stale" / "seed3", f"synthetic rig {fingerprint()}", rig="fedcba9876543210")
    with pytest.raises(SystemExit, match="fedcba9876543210"):
        bench_demo.check_rendered_by_this_rig(tmp_path / "stale")
