"""Model artifact folders: manifest.yaml + model.onnx (+ checkpoint.pt), every file sha256-checked.

An artifact is what a kiosk runs. Loading one verifies the hash of every file listed in the manifest
and the manifest's own digest, so a swapped model, a hand-edited threshold or a truncated copy is
refused with an ArtifactError naming the file. (The hashes give integrity, not authenticity: whoever
can rewrite the folder can rewrite the hashes; sign or read-only-mount the folder for that.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from edge_fas.errors import ArtifactError, ConfigError
from edge_fas.preprocess import PreprocessParams

MANIFEST = "manifest.yaml"
ONNX = "model.onnx"
CHECKPOINT = "checkpoint.pt"
FORMAT = 1
INPUT_NAMES = ("rgb", "depth", "ir", "present")
# keys every manifest must have (beyond "files" and "manifest_sha256", which write_manifest adds)
REQUIRED = ("format", "model", "inputs", "outputs", "preprocess", "threshold", "training")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical YAML without its own digest key."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(yaml.safe_dump(body, sort_keys=True).encode()).hexdigest()


def manifest_body(manifest: dict, *drop: str) -> dict:
    """A written manifest without what write_manifest adds (files, manifest_sha256) and the keys `drop`:
    the starting point for rewriting an artifact's manifest."""
    return {k: v for k, v in manifest.items() if k not in ("files", "manifest_sha256", *drop)}


def write_manifest(folder: str | Path, manifest: dict, files: list[str]) -> dict:
    """Hash `files` (names inside folder), add them and the manifest digest, write manifest.yaml.

    Returns the manifest as written.
    """
    folder = Path(folder)
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ArtifactError(f"manifest for {folder}: missing key(s) {missing}; the exporter must fill them")
    out = dict(manifest)
    out["files"] = {}
    for name in files:
        p = folder / name
        if not p.is_file():
            raise ArtifactError(f"artifact {folder}: file {name!r} to be listed in the manifest does not exist")
        out["files"][name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    out["manifest_sha256"] = _manifest_digest(out)
    (folder / MANIFEST).write_text(yaml.safe_dump(out, sort_keys=False))
    return out


@dataclass(frozen=True)
class Artifact:
    """A verified artifact folder and its manifest."""

    folder: Path
    manifest: dict

    @property
    def onnx_path(self) -> Path:
        return self.folder / ONNX

    @property
    def checkpoint_path(self) -> Path | None:
        p = self.folder / CHECKPOINT
        return p if CHECKPOINT in self.manifest["files"] else None

    @property
    def onnx_sha256(self) -> str:
        return self.manifest["files"][ONNX]["sha256"]

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def output_names(self) -> list[str]:
        return list(self.manifest["outputs"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"]["value"])

    @cached_property
    def calibration(self):
        """The fitted score calibration (edge_fas.score_calibration); identity for an uncalibrated model."""
        from edge_fas.score_calibration import ScoreCalibration
        try:
            return ScoreCalibration.from_dict(self.manifest.get("calibration"))
        except ValueError as e:
            raise ArtifactError(f"artifact {self.folder}: manifest 'calibration' section is invalid: {e}") from e

    @property
    def operating_point(self) -> dict | None:
        """The manifest's operating point (target, threshold, validated_range, split, evidence), if recorded."""
        return self.manifest.get("operating_point")

    @property
    def input_size(self) -> int:
        return int(self.manifest["preprocess"]["size"])

    @property
    def digest(self) -> str:
        """The manifest's own sha256: it covers every file's hash, so it names this exact artifact."""
        return str(self.manifest["manifest_sha256"])

    @property
    def validated_threshold_range(self) -> tuple[float, float]:
        """[lo, hi] of thresholds the operating point was validated on (manifest operating_point.validated_range).

        An artifact without that section has only its own operating threshold validated: (t, t)."""
        rng = (self.manifest.get("operating_point") or {}).get("validated_range")
        if rng is None:
            return self.threshold, self.threshold
        try:
            lo, hi = (float(v) for v in rng)
        except (TypeError, ValueError):
            raise ArtifactError(f"artifact {self.folder}: operating_point.validated_range {rng!r} is not [lo, hi]; "
                                "re-export the artifact") from None
        if not 0.0 <= lo <= hi <= 1.0:
            raise ArtifactError(f"artifact {self.folder}: operating_point.validated_range {rng!r} is not within "
                                "[0, 1] with lo <= hi; re-export the artifact")
        return lo, hi

    @property
    def has_validated_range(self) -> bool:
        return (self.manifest.get("operating_point") or {}).get("validated_range") is not None

    @property
    def trained_modalities(self) -> tuple[str, ...]:
        """The modalities the model was trained and calibrated on (manifest model.config.modalities).

        A manifest that does not say is taken to need all three (rgb, depth, ir): the conservative reading."""
        config = (self.manifest.get("model") or {}).get("config") or {}
        mods = config.get("modalities") if isinstance(config, dict) else None
        if not mods:
            return ("rgb", "depth", "ir")
        return tuple(str(m) for m in mods)

    @property
    def is_demo(self) -> bool:
        """The bundled demo model, however it is referenced: 'demo', its folder, a copy, a symlink."""
        return is_demo_manifest(self.folder, self.manifest)

    @property
    def preprocess(self) -> PreprocessParams:
        try:
            return PreprocessParams.from_dict(self.manifest["preprocess"])
        except (ConfigError, TypeError) as e:
            raise ArtifactError(f"artifact {self.folder}: manifest 'preprocess' section is invalid: {e}") from e


def demo_folder() -> Path:
    """Where the bundled demo artifact lives (package data; may be absent in a dev tree)."""
    return Path(__file__).resolve().parent / "assets" / "demo"


def is_demo_manifest(folder: Path, manifest: dict) -> bool:
    """Same folder as the bundled demo, or the same model file (by sha256) as the demo's manifest lists."""
    demo = demo_folder()
    try:
        if Path(folder).resolve() == demo.resolve():
            return True
        demo_manifest = yaml.safe_load((demo / MANIFEST).read_text())
    except (OSError, yaml.YAMLError):
        return False  # no demo in this install: nothing can be a copy of it
    demo_hashes = {e.get("sha256") for e in (demo_manifest.get("files") or {}).values() if isinstance(e, dict)}
    ours = {e.get("sha256") for e in (manifest.get("files") or {}).values() if isinstance(e, dict)}
    return bool(demo_hashes & ours) or manifest.get("manifest_sha256") == demo_manifest.get("manifest_sha256")


def resolve(path_or_name: str | Path) -> Path:
    """'demo' -> the bundled demo artifact folder; anything else is a folder path."""
    if str(path_or_name) == "demo":
        folder = demo_folder()
        if not (folder / MANIFEST).is_file():
            raise ArtifactError(
                f"the bundled demo artifact is missing ({folder}/{MANIFEST}); reinstall edge-fas or export one "
                "with `edge-fas export runs/demo/checkpoint.pt --out edge_fas/assets/demo`")
        return folder
    return Path(path_or_name)


def load_artifact(path_or_name: str | Path) -> Artifact:
    """Read and verify an artifact folder (or 'demo'); raises ArtifactError naming the bad file."""
    folder = resolve(path_or_name)
    if not folder.is_dir():
        raise ArtifactError(f"model artifact {folder} is not a folder; give the folder `edge-fas export` wrote")
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"model artifact {folder} has no {MANIFEST}; re-export it with `edge-fas export`")
    try:
        manifest = yaml.safe_load(mpath.read_text())
    except yaml.YAMLError as e:
        raise ArtifactError(f"{mpath} is not valid YAML ({e}); re-export the artifact") from e
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath} is not a mapping; re-export the artifact")
    missing = [k for k in REQUIRED + ("files", "manifest_sha256") if k not in manifest]
    if missing:
        raise ArtifactError(f"{mpath} lacks key(s) {missing}; re-export the artifact")
    if manifest["format"] != FORMAT:
        raise ArtifactError(f"{mpath}: artifact format {manifest['format']!r}, this edge-fas reads format {FORMAT}; "
                            "re-export with this version")
    if _manifest_digest(manifest) != manifest["manifest_sha256"]:
        raise ArtifactError(f"{mpath} was modified after export (its digest does not match); "
                            "restore the original or re-export the artifact")
    files = manifest["files"]
    if ONNX not in files:
        raise ArtifactError(f"{mpath} lists no {ONNX}; re-export the artifact")
    for name, entry in files.items():
        p = folder / name
        if Path(name).name != name:
            raise ArtifactError(f"{mpath} lists {name!r}, which is not a plain file name in the artifact folder")
        if not p.is_file():
            raise ArtifactError(f"artifact file {p} is missing; restore it or re-export the artifact")
        if sha256_file(p) != entry["sha256"]:
            raise ArtifactError(f"artifact file {p} does not match its sha256 in {MANIFEST}: it was changed or "
                                "corrupted; restore the original or re-export the artifact")
    loaded = Artifact(folder=folder, manifest=manifest)
    loaded.calibration  # noqa: B018  (a malformed calibration is refused at load, not at the first frame)
    return loaded
