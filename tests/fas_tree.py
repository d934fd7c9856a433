"""A tiny data root in the public releases' real layouts, for the dataset tests.

Written by the tests (nothing is copied from any release): small noise images where the releases have
face-crop images, npz and HDF5 files of the releases' shapes, and list files in the official formats
(CRLF line ends and no final newline for the MMDG/FlexModal lists, tab-separated PADISI lines, CSV
partitions). Each dataset has bona fide samples and several attack species in every split.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np

RNG = np.random.default_rng(7)
WMCA_PAI_NAMES = {"fakehead": "2_01", "flexiblemask": "2_80", "glasses": "1_01", "papermask": "2_08",
                  "print": "3_01", "replay": "4_01", "rigidmask": "2_12"}


def _img(path: Path, colour: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (20, 16, 3) if colour else (20, 16)
    cv2.imwrite(str(path), RNG.integers(30, 230, shape, dtype=np.uint8))


def _triplet(root: Path, folder: str, name: str, colour_dir: str = "color") -> list[str]:
    """Write folder/{colour_dir,depth,ir}/name; return the three listed paths."""
    out = []
    for m in (colour_dir, "depth", "ir"):
        _img(root / folder / m / name, m == colour_dir)
        out.append(f"{folder}/{m}/{name}")
    return out


def write_list(path: Path, lines: list[str], crlf: bool = True) -> None:
    """The official lists' line ends: CRLF and no final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode())


# --- per dataset, per split: (listed folder or name, label 1 = bona fide) ---------------------------

def cefa_videos(split: str) -> list[tuple[str, int]]:
    i = {"train": 0, "val": 1, "test": 2}[split]
    return [(f"AF/AF-{i:03d}/1_{i:03d}_1_1_1", 1), (f"AF/AF-{i:03d}/1_{i:03d}_3_1_2", 0),
            (f"AF/AF-{i:03d}/1_{i:03d}_3_1_4", 0), (f"AF/AF-{i + 10:03d}/1_{i + 10:03d}_1_1_1", 1)]


def surf_sessions(split: str) -> list[tuple[str, int]]:
    i = {"train": 5, "val": 10, "test": 2}[split]
    return [(f"real_part/real_{split}_part/CLKJ_AS{i:04d}/real.rssdk", 1),
            (f"fake_part/fake_{split}_part/CLKJ_AS{i:04d}/01_e_s.rssdk", 0),
            (f"fake_part/fake_{split}_part/CLKJ_AS{i:04d}/06_enm_b.rssdk", 0),
            (f"real_part/real_{split}_part/CLKJ_BS{i:04d}/real.rssdk", 1)]


def wmca_names(split: str) -> list[tuple[str, int]]:
    c = {"train": 2, "val": 3, "test": 1}[split]
    pais = list(WMCA_PAI_NAMES.values()) if split == "test" else ["3_01", "2_80"]
    return [(f"{c:03d}_01_000_0_00", 1), (f"{c:03d}_01_000_0_01", 1)] + [(f"{c:03d}_01_000_{p}", 0) for p in pais]


def make_tree(root: Path) -> Path:
    root = Path(root)
    mmdg = root / "MMDG-Benchmark"
    flex = root / "FlexModal_Protocols"
    for split in ("train", "val", "test"):
        # CeFA in the MMDG layout (profile/ colour folder), plus a 3D and a silicone mask in test
        c_lines = []
        videos = [(f"CeFA/CeFA-Race/{v}", lab) for v, lab in cefa_videos(split)]
        if split == "test":
            videos += [("CeFA/CeFA-Mask/3D-Mask/002/1_002_1_1_2_1_3", 0), ("CeFA/CeFA-Mask/Silicone-Mask/001/2_001_1_1_2_1_1", 0)]
        for folder, lab in videos:
            c_lines.append(" ".join(_triplet(root, folder, "0026.jpg", "profile")) + f" {lab}")
        write_list(mmdg / f"C-{split}.txt", c_lines)
        # CASIA-SURF-CROP
        s_lines = []
        for folder, lab in surf_sessions(split):
            s_lines.append(" ".join(_triplet(root, f"CASIA-SURF-CROP/{folder}", "131.jpg")) + f" {lab}")
        write_list(mmdg / f"S-{split}.txt", s_lines)
        # WMCA-Image
        w_lines = []
        for name, lab in wmca_names(split):
            w_lines.append(" ".join(_triplet(root, f"WMCA-Image/R_CDIT/{name}", "0012.jpg")) + f" {lab}")
        write_list(mmdg / f"W-{split}.txt", w_lines)
        # PADISI npz, MMDG names, tab-separated lines
        p_lines = []
        for k, lab in enumerate((1, 0, 0, 1)):
            name = f"z{split[:2]}{k:05d}.npz"
            data = RNG.uniform(0.05, 0.95, (1, 22, 32, 24)).astype(np.float32)
            (root / "PADISI").mkdir(parents=True, exist_ok=True)
            np.savez(root / "PADISI" / name, data=data)
            p_lines.append(f"{name}\t{lab}")
        write_list(mmdg / f"P-{split}.txt", p_lines, crlf=False)
        # FlexModal: CASIA-SURF + CeFA lists, WMCA test lists
        write_list(flex / f"CASIA-SURF_CeFA_{split}.txt", s_lines + c_lines[:4])
    w_test = (mmdg / "W-test.txt").read_text().splitlines()
    write_list(flex / "WMCA_test.txt", w_test)
    for pai, code in WMCA_PAI_NAMES.items():
        write_list(flex / f"WMCA_test_{pai}.txt", [ln for ln in w_test if f"_{code}/" in ln])
    _cefa_reissue(root)
    _surf_release(root)
    _wmca_hdf5(root)
    return root


def _cefa_reissue(root: Path) -> None:
    """CASIA_CeFA/Ethnicity/... video folders (color/ frames) and the CASIA-FAS-Dataset protocol lists
    (2 fields, 0 = live, LF line ends), video lists for every sub-protocol; image lists for 4.1."""
    for k in ("1.1", "1.3", "1.5", "2.1", "2.2", "4.1", "4.3", "4.5"):
        for split, tag in (("train", "train"), ("val", "dev"), ("test", "test")):
            lines, images = [], []
            for v, lab in cefa_videos(split):
                folder = f"CASIA_CeFA/Ethnicity/{v}"
                if not (root / folder / "color").is_dir():
                    for n in ("0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"):
                        _triplet(root, folder, n)
                lines.append(f"{folder}/color {1 - lab}")
                images.append(f"{folder}/color/0002.jpg {1 - lab}")
            if split == "test":
                folder = "CASIA_CeFA/Mask/3D-Mask/002/1_002_1_1_2_1_3"
                if not (root / folder / "color").is_dir():
                    _triplet(root, folder, "0001.jpg")
                lines.append(f"{folder}/color 1")
            write_list(root / "CASIA_CeFA" / "protocol" / f"CASIA_CeFA@p{k}_video_{tag}.txt", lines, crlf=False)
            if k == "4.1":
                write_list(root / "CASIA_CeFA" / "protocol" / f"CASIA_CeFA@p{k}_image_{tag}.txt", images, crlf=False)


def _surf_release(root: Path) -> None:
    """CASIA-SURF's own release: Training/ with sessions, anonymised Val/ and Testing/, and its lists."""
    base = root / "CASIA-SURF"
    train = []
    for folder, lab in surf_sessions("train"):
        parts = folder.split("/")
        folder = f"Training/{parts[0]}/{parts[2]}/{parts[3]}"
        train.append(" ".join(_triplet(base, folder, "31.jpg")) + f" {lab}")
    write_list(base / "train_list.txt", train, crlf=False)
    for split, listname in (("Val", "val_private_list.txt"), ("Testing", "test_private_list.txt")):
        lines = []
        for i, lab in enumerate((1, 0, 0, 1)):
            paths = []
            for m, colour in (("color", True), ("depth", False), ("ir", False)):
                _img(base / split / "0000" / f"{i:06d}-{m}.jpg", colour)
                paths.append(f"{split}/0000/{i:06d}-{m}.jpg")
            lines.append(" ".join(paths) + f" {lab}")
        write_list(base / listname, lines, crlf=False)


def _frames(h5: h5py.File, frames: list[np.ndarray], layout: str) -> None:
    if layout == "data":
        h5.create_dataset("data", data=np.stack(frames))
    else:
        for k, a in enumerate(frames):
            h5.create_dataset(f"Frame_{k}/array", data=a)


def _wmca_hdf5(root: Path) -> None:
    """Idiap's preprocessed WMCA pair and the grandtest partition CSV (bob's export columns)."""
    rows = [",client_id,filepath,group,label"]
    n = 0
    for split, group in (("train", "train"), ("val", "dev"), ("test", "eval")):
        for name, lab in wmca_names(split):
            filepath = f"face-station/17.01.18/{name}"
            t, p = name.split("_")[3:]
            label = "bonafide" if lab else {"3": "attack/2D/prints", "4": "attack/2D/replay"}.get(t, "attack")
            n += 1
            rows.append(f"{n},{name[:3]},{filepath},{group},{label}")
            layout = "data" if n % 3 == 0 else "groups"
            for tree, chans in (("preprocessed-face-station_RGB", 3), ("preprocessed-face-station_CDIT", 4)):
                p_ = root / "WMCA" / tree / "face-station" / "17.01.18" / f"{name}.hdf5"
                p_.parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(p_, "w") as h:
                    _frames(h, [RNG.integers(1, 255, (chans, 24, 24), dtype=np.uint8) for _ in range(4)], layout)
    write_list(root / "WMCA" / "grandtest.csv", rows, crlf=False)
