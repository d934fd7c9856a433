"""Presentation-attack-instrument (PAI) species of the public datasets, and the family each belongs to.

Every attack sample carries its species from the source (path, list or metadata), so ISO/IEC 30107-3
per-species APCER works on real data. Species are snake_case. Where a dataset's PAI is physically one
of the synthetic rig's families (print, replay, rigid_mask, paper_mask, flexible_mask = silicone,
partial) it takes that name; where the source is finer and the difference matters for per-species
APCER (CASIA-SURF's cut styles, CeFA's cloth vs photo prints) the finer name is kept and FAMILY maps
it onto the rig's family.

| dataset | source code | species | family |
| --- | --- | --- | --- |
| WMCA | type 1, PAI 01 04-07 15 16 (funny-eyes / paper glasses) | glasses | partial |
| WMCA | type 1, PAI 02 13 14; type 2, PAI 12-17 (plastic, transparent, custom wearable masks) | rigid_mask | rigid_mask |
| WMCA | type 2, PAI 01-07 (mannequins) | fake_head | rigid_mask |
| WMCA | type 2, PAI 08-11 (papercraft masks) | paper_mask | paper_mask |
| WMCA | type 2, PAI 18 75-99 (flexible silicone masks) | flexible_mask | flexible_mask |
| WMCA | type 3, PAI 01-04 06-09 11-14 (printed) | print | print |
| WMCA | type 3, PAI 05 10 15 (electronic photo); type 4 (video play / pause) | replay | replay |
| WMCA | type 5 (makeup; not in the public protocols) | makeup | partial |
| CeFA | ethnicity videos, PAI 2 (cloth) | print_cloth | print |
| CeFA | ethnicity videos, PAI 3 (photo) | print_photo | print |
| CeFA | ethnicity videos, PAI 4 (screen) | replay | replay |
| CeFA | 3D-Mask (3D-printed) | rigid_mask | rigid_mask |
| CeFA | Silicone-Mask | flexible_mask | flexible_mask |
| CASIA-SURF | attack 1-6: NN_<cut>_<s or b> (cut e / en / enm; s = flat, b = bent) | print_cut_<eyes, eyes_nose, eyes_nose_mouth>_<flat, bent> | print |
| CASIA-SURF | anonymised val/test files (cut not in the path) | print | print |
| PADISI-Face | ground-truth code m5CCSS (PAI code CC) | padisi_pai_CC | (not published) |

Sources: WMCA codes from bob.pad.face's BATL map (lists/batl/idiap_converter_v2.json, git history of
github.com/bioidiap/bob.pad.face) and the seven FlexModal WMCA_test_<PAI> lists (github.com/OMGGGGG/mmdg);
CeFA codes from the CeFA readme in github.com/liuajian/CASIA-FAS-Dataset; CASIA-SURF attack numbering
from bob.db.casiasurf (attack type = the session folder's leading number) and the CASIA-SURF paper
(attacks 1/3/5 flat, 2/4/6 bent; eyes, eyes+nose, eyes+nose+mouth cut); PADISI codes from the
PADISI_USC_Dataset README (m00000 bona fide, m5<PAI code><species>; code 06 is makeup, the others'
descriptions need the sponsor's approval, so only the code is used).
"""

from __future__ import annotations

__all__ = ["BONA_FIDE", "FAMILY", "FAMILIES", "WMCA_PAI", "wmca_species", "casia_surf_species", "cefa_species",
           "padisi_species", "family", "family_index"]

BONA_FIDE = "bona_fide"

# WMCA (bob.db.batl) file names end in _<type>_<pai>; type 0 is bona fide
WMCA_PAI: dict[tuple[int, int], str] = {}
for _type, _pais, _species in (
        (1, (1, 3, 4, 5, 6, 7, 15, 16), "glasses"),
        (1, (2, 13, 14), "rigid_mask"),
        (2, range(1, 8), "fake_head"),
        (2, range(8, 12), "paper_mask"),
        (2, range(12, 18), "rigid_mask"),
        (2, (18, *range(75, 100)), "flexible_mask"),
        (3, (1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14), "print"),
        (3, (5, 10, 15), "replay"),
        (4, range(1, 19), "replay")):
    for _p in _pais:
        WMCA_PAI[(_type, _p)] = _species

# the names the WMCA protocol files (bob's attack_type "attack/<2D|3D>/<name>") use
WMCA_LABEL_NAMES = {"glasses": "glasses", "rigidmask": "rigid_mask", "fakehead": "fake_head",
                    "papermask": "paper_mask", "flexiblemask": "flexible_mask", "prints": "print",
                    "replay": "replay", "makeup": "makeup"}

CASIA_SURF_CUTS = {"e": "eyes", "en": "eyes_nose", "enm": "eyes_nose_mouth"}
CASIA_SURF_SHAPES = {"s": "flat", "b": "bent"}

CEFA_RACE_PAI = {2: "print_cloth", 3: "print_photo", 4: "replay"}  # 1 is bona fide

FAMILY = {"print": "print", "print_cloth": "print", "print_photo": "print", "replay": "replay",
          "rigid_mask": "rigid_mask", "fake_head": "rigid_mask", "paper_mask": "paper_mask",
          "flexible_mask": "flexible_mask", "glasses": "partial", "makeup": "partial",
          **{f"print_cut_{c}_{s}": "print" for c in CASIA_SURF_CUTS.values() for s in CASIA_SURF_SHAPES.values()}}


# bona fide and the rig's six attack families, in the order a family head's classes take (models/spoof_trace.py)
FAMILIES = (BONA_FIDE, "print", "replay", "rigid_mask", "paper_mask", "flexible_mask", "partial")


def family(species: str) -> str | None:
    """The synthetic rig's family for a dataset species (None where the source does not say)."""
    if species == BONA_FIDE or species in FAMILIES:  # the rig's own species are families already
        return species
    return FAMILY.get(species)


def family_index(species: str) -> int:
    """The species' family's index in FAMILIES, or -1 where the source does not say (a family head ignores it)."""
    name = family(str(species))
    return FAMILIES.index(name) if name in FAMILIES else -1


def wmca_species(type_id: int, pai_id: int) -> str | None:
    """Species of a WMCA file with this type and PAI id; bona fide for type 0; None if unknown."""
    if type_id == 0:
        return BONA_FIDE
    if type_id == 5:
        return "makeup"
    return WMCA_PAI.get((type_id, pai_id))


def casia_surf_species(session: str) -> str | None:
    """Species of a CASIA-SURF session folder: 'real.rssdk' -> bona fide, '03_en_s.rssdk' ->
    print_cut_eyes_nose_flat; None when the name is not one of these."""
    stem = session.split(".")[0]
    if stem == "real":
        return BONA_FIDE
    parts = stem.split("_")
    if len(parts) == 3 and parts[0].isdigit() and parts[1] in CASIA_SURF_CUTS and parts[2] in CASIA_SURF_SHAPES:
        return f"print_cut_{CASIA_SURF_CUTS[parts[1]]}_{CASIA_SURF_SHAPES[parts[2]]}"
    return None


def cefa_species(video: str, mask_folder: str | None = None) -> str | None:
    """Species of a CeFA video folder name. Ethnicity videos: Race_ID_AcqDevice_Session_PAI (PAI 1 real,
    2 cloth, 3 photo, 4 screen); mask videos (7 fields): first field 1 = 3D mask, 2 = silicone mask.
    None when the name does not follow the release's format."""
    parts = video.split("_")
    if not all(p.isdigit() for p in parts):
        return None
    if len(parts) == 5:
        pai = int(parts[4])
        return BONA_FIDE if pai == 1 else CEFA_RACE_PAI.get(pai)
    if len(parts) == 7:
        kind = {"3D-Mask": 1, "Silicone-Mask": 2}.get(mask_folder or "", int(parts[0]))
        return {1: "rigid_mask", 2: "flexible_mask"}.get(kind)
    return None


def padisi_species(code: str) -> str | None:
    """Species of a PADISI-Face ground-truth code: m00000 bona fide, m5CCSS -> padisi_pai_CC."""
    if code == "m00000":
        return BONA_FIDE
    if len(code) == 6 and code.startswith("m5") and code[2:].isdigit():
        return f"padisi_pai_{code[2:4]}"
    return None
