"""List files as the releases ship them, and label polarity.

Formats read (one sample per line, fields separated by any whitespace, so the PADISI lists' tabs and
the CASIA lists' spaces both work; CRLF line ends, a byte-order mark and a missing final newline are
all accepted; blank lines and lines starting with # are skipped):

- 4 fields `color depth ir label`: the MMDG-Benchmark C/S/W lists and the FlexModal lists
  (github.com/OMGGGGG/mmdg) and CASIA-SURF's own train/val/test lists (bob.db.casiasurf /
  bob.pad.face read them the same way);
- 2 fields `path label`: the MMDG-Benchmark PADISI lists (`zXXXXXXX.npz<TAB>label`) and the re-issued
  CASIA-FAS-Dataset lists (github.com/liuajian/CASIA-FAS-Dataset), whose path is a colour image or a
  video's colour folder.

Polarity differs between sources and is never guessed: "live=1" (1 = bona fide: every MMDG-Benchmark
and FlexModal list, the PADISI npz lists included, and CASIA-SURF's own lists) or "attack=1"
(1 = attack: the CASIA-FAS-Dataset lists, whose readmes say "live:0/fake:1"). Inside edge-fas 1 =
attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_fas.data.records import DatasetError

__all__ = ["POLARITIES", "ListLine", "read_list", "to_attack_label"]

POLARITIES = {"live=1": "1 = bona fide, 0 = attack", "attack=1": "1 = attack, 0 = bona fide"}
FORMATS = {4: "color depth ir label", 2: "path label"}


@dataclass(frozen=True)
class ListLine:
    fields: tuple[str, ...]  # the path field(s), label removed
    value: int               # the label as written (0 or 1, the source's polarity)
    where: str               # "file:line"


def to_attack_label(value: int, polarity: str, where: str) -> int:
    """A source label (0/1 in `polarity`) as ours (1 = attack)."""
    if polarity not in POLARITIES:
        raise DatasetError(f"{where}: label polarity {polarity!r} is unknown; the source must say which of "
                           f"{', '.join(POLARITIES)} it uses (edge-fas does not guess)")
    if value not in (0, 1):
        raise DatasetError(f"{where}: label {value} is not 0 or 1")
    return value if polarity == "attack=1" else 1 - value


def read_list(path, fields: tuple[int, ...] = (4, 2)) -> list[ListLine]:
    """Parse a list file whose lines hold one of `fields` field counts, the last being a 0/1 label.
    Every error names the file, the line and what to fix."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"list file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"list file {path} cannot be read as text ({e}); re-download it") from None
    expected = " or ".join(f"{n} ({FORMATS.get(n, 'paths then label')})" for n in fields)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        where = f"{path}:{n}"
        if len(parts) not in fields:
            raise DatasetError(f"{where}: expected {expected} whitespace-separated fields, got {len(parts)}: "
                               f"{line.strip()!r}; fix or remove the line")
        if parts[-1] not in ("0", "1"):
            raise DatasetError(f"{where}: label {parts[-1]!r} is not 0 or 1; fix the line (labels are 0/1)")
        out.append(ListLine(tuple(parts[:-1]), int(parts[-1]), where))
    if not out:
        raise DatasetError(f"list file {path} has no entries")
    return out
