"""CASIA-SURF (MmFA): face-crop image trees and their lists.

Layouts followed:
- the original release, as bob.db.casiasurf (create.py) indexes it: `Training/{real_part,fake_part}/
  CLKJ_<id>/<session>/{color,depth,ir}/<n>.jpg`, with `<session>` `real.rssdk` for bona fide and
  `NN_<cut>_<s|b>.rssdk` for attack NN (cut e / en / enm = eyes / eyes+nose / eyes+nose+mouth cut
  out of the print, s flat, b bent); the challenge-time Val and Testing files are anonymised
  (`<id>-color.jpg`), so their attacks are species `print` (every CASIA-SURF attack is a print);
- its own lists, as bob.pad.face (database/casia_surf.py) reads them: `train_list.txt`,
  `val_private_list.txt`, `test_private_list.txt`, space-separated `color depth ir label`, label
  1 = bona fide, paths relative to the release folder;
- the MMDG-Benchmark S lists and the FlexModal lists (github.com/OMGGGGG/mmdg): the same sessions under
  `CASIA-SURF-CROP/{real_part,fake_part}/{real,fake}_{train,val,test}_part/...`, label 1 = bona fide;
- the CASIA-FAS-Dataset re-issue (github.com/liuajian/CASIA-FAS-Dataset, CASIA_SURF/readme.md):
  `CASIA_SURF/Data/{Training,Val,Testing}/...`, 2-field lists, label 0 = live.

The release ships face crops (the images show the face region only), so they are used as crops
(edge_fas.data.images).
"""

from __future__ import annotations

from pathlib import Path

from edge_fas.data.images import triplet_records
from edge_fas.data.lists import ListLine
from edge_fas.data.records import Record
from edge_fas.data.species import BONA_FIDE, casia_surf_species

__all__ = ["DATASET", "path_species", "records"]

DATASET = "surf"


def path_species(listed: str) -> str | None:
    """The species a listed CASIA-SURF path names: its session folder, else real_part/fake_part, else
    nothing (anonymised val/test files)."""
    parts = Path(listed).parts
    for part in parts:
        if part.endswith(".rssdk"):
            sp = casia_surf_species(part)
            if sp is not None:
                return sp
    if "real_part" in parts:
        return BONA_FIDE
    if "fake_part" in parts:
        return "print"
    return None


def records(line: ListLine, polarity: str, root: Path, frames_per_video: int = 3) -> list[Record]:
    return triplet_records(line, polarity, lambda p: root / p, DATASET, path_species, frames_per_video,
                           default_attack="print")
