"""Face-crop image triplets (colour, depth, IR image files), shared by the CASIA-SURF, CeFA and
WMCA-Image readers, and the one place released face crops become SourceCrops (edge_fas.data.source).

Releases that ship face crops (CASIA-SURF's and CeFA's images and the MMDG WMCA-Image export are
already cropped to the face; so are the PADISI npz arrays and Idiap's preprocessed WMCA) are used as
crops: resized to the model input, not re-detected, unless the user asks for detection
(data.detect), in which case the live pipeline's BlazeFace detector frames the crop with
edge_fas.preprocess.crop_face exactly as live (the whole image where it finds no face). Either way the
pixels go through edge_fas.preprocess, the function the live pipeline uses (source.finish).

8-bit depth images in these releases are brighter = nearer; they become a pseudo-distance
(`(256 - v) * DEPTH_8BIT_MM`, 0 stays a hole) so the shared depth normalisation (median/MAD, nearer
positive) applies unchanged.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_fas.data.lists import ListLine, to_attack_label
from edge_fas.data.records import DatasetError, Record
from edge_fas.data.species import BONA_FIDE
from edge_fas.data.source import SourceCrop, face_source, finish, whole_source
from edge_fas.types import FaceCrop, FrameSet

__all__ = ["source", "aligned_source", "aligned_crop", "depth8_to_mm", "read_image", "swap_modality", "video_frames",
           "check_label", "triplet_records", "DEPTH_8BIT_MM", "COLOUR_FOLDERS", "IMAGE_SUFFIXES"]

DEPTH_8BIT_MM = 4.0  # pseudo-mm per grey level of an 8-bit "brighter = nearer" depth image
COLOUR_FOLDERS = ("color", "profile", "rgb")  # CASIA-SURF/WMCA-Image say color, the CeFA release profile
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: str, where: str, grey: bool) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{where}: image {p} does not exist; check the data root (--data-root) and that "
                           "the release is extracted with its folder names unchanged")
    img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{where}: image {p} could not be decoded; the file is damaged, re-extract it")
    return img if grey else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def depth8_to_mm(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float32)
    return np.where(v > 0, (256.0 - v) * DEPTH_8BIT_MM, 0.0).astype(np.float32)


def aligned_source(rgb, depth_mm, ir, params, detector=None) -> SourceCrop:
    """The SourceCrop of registered images that already show the face (a release's crops): kept whole,
    or, with a detector, the face it finds (the whole image where it finds none) as the live pipeline
    crops it. rgb: HxWx3 uint8 RGB; depth_mm: HxW float distance in mm (0 = hole); ir: HxW uint8/uint16."""
    if detector is not None and rgb is not None:
        h, w = rgb.shape[:2]
        dets = detector.detect(rgb)
        box = max(dets, key=lambda d: d.area).box if dets else (0, 0, w, h)
        depth = None if depth_mm is None else np.clip(np.round(depth_mm), 0, 65535).astype(np.uint16)
        frames = FrameSet(rgb=rgb, depth=depth, ir=ir, depth_scale=0.001, registered=True)
        return face_source(frames, box, params)
    return whole_source(rgb, depth_mm, ir, params)


def aligned_crop(rgb, depth_mm, ir, params, detector=None) -> FaceCrop:
    """aligned_source, resized and normalised (edge_fas.data.source.finish)."""
    return finish(aligned_source(rgb, depth_mm, ir, params, detector), params)


def source(record: Record, params, detector=None) -> SourceCrop:
    """Decode a colour/depth/IR image triplet record."""
    rgb_p, depth_p, ir_p = record.files
    rgb = read_image(rgb_p, record.where, grey=False)
    depth = read_image(depth_p, record.where, grey=True)
    ir = read_image(ir_p, record.where, grey=True)
    if depth.shape != rgb.shape[:2] or ir.shape != rgb.shape[:2]:  # releases crop all three alike
        depth = cv2.resize(depth, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        ir = cv2.resize(ir, rgb.shape[1::-1], interpolation=cv2.INTER_AREA)
    return aligned_source(rgb, depth8_to_mm(depth), ir, params, detector)


def swap_modality(path: str, modality: str, where: str) -> str:
    """The same file in another modality's folder: .../color/0012.jpg -> .../depth/0012.jpg."""
    parts = list(Path(path).parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in COLOUR_FOLDERS:
            parts[i] = modality
            return str(Path(*parts))
    raise DatasetError(f"{where}: {path} has no colour folder ({'/'.join(COLOUR_FOLDERS)}) to find its {modality} "
                       "image next to; the list must name the colour image or folder")


def video_frames(folder: Path, where: str) -> list[str]:
    """The image files of one video folder, in frame order."""
    if not folder.is_dir():
        raise DatasetError(f"{where}: video folder {folder} does not exist; check the data root (--data-root)")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise DatasetError(f"{where}: video folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return names


def check_label(label: int, path_species: str | None, where: str, polarity: str) -> None:
    """Refuse a line whose label contradicts what its path says (the list's polarity would be
    inverted, or the line is wrong): a bona fide path labelled attack, or the reverse."""
    if path_species is None:
        return
    if (path_species == BONA_FIDE) != (label == 0):
        said = "attack" if label else "bona fide"
        named = "bona fide sample" if path_species == BONA_FIDE else f"{path_species} attack"
        raise DatasetError(f"{where}: the label reads as {said} under this list's polarity ({polarity}), but the "
                           f"path names a {named}; "
                           "the list is not the file this protocol expects (or its polarity differs): check the file")


def _modality_of(path: str) -> str | None:
    """The modality a listed path names by its folder (color/profile/rgb, depth, ir) or file name."""
    p = Path(path)
    for part in reversed(p.parts[:-1]):
        if part in COLOUR_FOLDERS:
            return "rgb"
        if part in ("depth", "ir"):
            return part
    tail = p.stem.rsplit("-", 1)[-1].lower()  # CASIA-SURF's anonymised val/test: 000123-color.jpg
    return {"color": "rgb", "depth": "depth", "ir": "ir"}.get(tail)


def triplet_records(line: ListLine, polarity: str, resolve, dataset: str, path_species, frames_per_video: int = 3,
                    default_attack: str = "attack") -> list[Record]:
    """Records of one list line naming face-crop images: `color depth ir` (4-field lists) or a colour
    image or a video's colour folder (2-field lists; depth and IR are the same file names in the
    sibling depth/ and ir/ folders; a video gives `frames_per_video` evenly spaced frames).

    resolve(listed path) -> Path on disk; path_species(listed path) -> the species the path names, or
    None where it names none (then attacks get `default_attack`). A label that contradicts the path
    stops with the line."""
    label = to_attack_label(line.value, polarity, line.where)
    listed = line.fields[0]
    path_sp = path_species(listed)
    check_label(label, path_sp, line.where, polarity)
    species = BONA_FIDE if label == 0 else (path_sp or default_attack)
    if len(line.fields) == 3:
        for column, (f, want) in enumerate(zip(line.fields, ("rgb", "depth", "ir")), 1):
            got = _modality_of(f)
            if got is not None and got != want:
                raise DatasetError(f"{line.where}: field {column} is a {got} image where the list format puts the "
                                   f"{want} image (color depth ir label); fix the line's field order")
        items = [(tuple(str(resolve(f)) for f in line.fields), listed)]
    else:
        colour = resolve(listed)
        if colour.suffix.lower() in IMAGE_SUFFIXES:
            items = [((str(colour), swap_modality(str(colour), "depth", line.where),
                       swap_modality(str(colour), "ir", line.where)), listed)]
        else:
            names = video_frames(colour, line.where)
            depth_dir = Path(swap_modality(str(colour / names[0]), "depth", line.where)).parent
            ir_dir = Path(swap_modality(str(colour / names[0]), "ir", line.where)).parent
            spread = np.linspace(0, len(names) - 1, min(frames_per_video, len(names)))
            pick = sorted({names[int(round(i))] for i in spread})
            items = [((str(colour / n), str(depth_dir / n), str(ir_dir / n)), f"{listed}/{n}") for n in pick]
    for files, _ in items:  # fail at indexing, before hours of training, not at the first batch
        for f in files:
            if not Path(f).is_file():
                raise DatasetError(f"{line.where}: image {f} does not exist; check the data root (--data-root) and "
                                   "that the release is extracted with its folder names unchanged")
    return [Record("images", files, label, species, dataset, shown, line.where) for files, shown in items]
