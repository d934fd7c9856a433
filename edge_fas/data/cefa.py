"""CASIA-SURF CeFA: face-crop image folders per video and their protocol lists.

Layouts followed:
- the release's folders, as its readme documents them (CASIA_CeFA/readme.md in
  github.com/liuajian/CASIA-FAS-Dataset): ethnicity videos `<Race>/<Race>-<ID>[-<IdCard>]/
  <Race>_<ID>_<AcqDevice>_<Session>_<PAI>/` (race 1 AF, 2 CA, 3 EA; PAI 1 real, 2 cloth, 3 photo,
  4 screen) and mask videos `3D-Mask/<ID>/1_<ID>_<Dresses>_<Glasses>_<Device>_<Session>_<Lighting>/`,
  `Silicone-Mask/<ID>/2_...`, each with `profile/` (colour; `color/` in the re-issue), `depth/`, `ir/`
  frames of the same file names;
- the MMDG-Benchmark C lists and the FlexModal lists (github.com/OMGGGGG/mmdg): 4-field lines under
  `CeFA/CeFA-Race/...` and `CeFA/CeFA-Mask/{3D-Mask,Silicone-Mask}/...`, label 1 = bona fide;
- the protocol lists of the CASIA-FAS-Dataset re-issue: `CASIA_CeFA/protocol/
  CASIA_CeFA@p<k>_{image,video}_{train,dev,test}.txt` for protocols 1.1/1.3/1.5 (cross-ethnicity,
  trained on AF/CA/EA), 2.1/2.2 (cross-PAI, cloth/screen) and 4.1/4.3/4.5 (both), 2 fields
  `path label`, label 0 = live ("Label: live:0/fake:1"); a video line names the video's colour
  folder and gives `frames_per_video` evenly spaced frames. A few lines of those lists start with
  `CeFA/` where the tree is `CASIA_CeFA/`; such a path is looked up under `CASIA_CeFA/` when the
  listed one does not exist.

The PAI species come from the video folder name (edge_fas.data.species.cefa_species). The release ships
face crops, so they are used as crops (edge_fas.data.images).
"""

from __future__ import annotations

from pathlib import Path

from edge_fas.data.images import triplet_records
from edge_fas.data.lists import ListLine
from edge_fas.data.records import Record
from edge_fas.data.species import cefa_species

__all__ = ["DATASET", "path_species", "records", "resolver"]

DATASET = "cefa"
MASK_FOLDERS = ("3D-Mask", "Silicone-Mask")


def path_species(listed: str) -> str | None:
    """The species named by the video folder in a listed CeFA path (None if no folder follows the format)."""
    parts = Path(listed).parts
    mask = next((p for p in parts if p in MASK_FOLDERS), None)
    for part in reversed(parts):
        if "_" in part:
            sp = cefa_species(part, mask)
            if sp is not None:
                return sp
    return None


def resolver(root: Path):
    def resolve(listed: str) -> Path:
        p = root / listed
        if not p.exists() and Path(listed).parts[:1] == ("CeFA",):
            alt = root / "CASIA_CeFA" / Path(*Path(listed).parts[1:])
            if alt.exists():
                return alt
        return p
    return resolve


def records(line: ListLine, polarity: str, root: Path, frames_per_video: int = 3) -> list[Record]:
    return triplet_records(line, polarity, resolver(root), DATASET, path_species, frames_per_video)
