"""Report folder: JSON (valid, NaN-free), Markdown, per-sample CSV and the PNG plots."""

import csv
import json

from edge_fas.report import write_report

SCORES = [0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.9]
LABELS = [0, 0, 0, 0, 1, 1, 1, 1]
SPECIES = ["bona_fide"] * 4 + ["print", "print", "replay", "replay"]


def test_report_folder(tmp_path):
    r = write_report(tmp_path, SCORES, LABELS, SPECIES, domains=["cefa"] * 8, threshold=0.5,
                     meta={"model": "x"}, all_species=["print", "replay", "rigid_mask"])
    assert r["bpcer"] == 0.0
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["metrics"]["apcer"] == {"print": 0.5, "replay": 0.0, "rigid_mask": None}
    assert doc["meta"] == {"model": "x"}
    md = (tmp_path / "metrics.md").read_text()
    assert "| APCER (print) | 50.00% |" in md and "rigid_mask) | n/a (species absent)" in md
    assert "(given)" in md
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert len(rows) == 8 and rows[4]["species"] == "print" and rows[4]["decision"] == "0"
    for png in ("roc.png", "det.png", "histogram.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_report_one_class_only_skips_curves(tmp_path):
    r = write_report(tmp_path, [0.2, 0.8], [0, 0])
    assert r["bpcer"] == 0.5
    assert (tmp_path / "histogram.png").exists() and not (tmp_path / "roc.png").exists()
    json.loads((tmp_path / "metrics.json").read_text())
