"""Public-dataset loaders on fixtures written here in each release's layout (no real data needed)."""

import h5py
import numpy as np
import cv2
import pytest

from edge_fas.data.public import (DatasetError, load_list, load_padisi_npz, load_wmca_hdf5, read_list,
                                  read_wmca_protocol)
from edge_fas.preprocess import PreprocessParams

P = PreprocessParams(size=16)


def _jpgs(folder, n):
    rng = np.random.default_rng(0)
    for m in ("color", "depth", "ir"):
        (folder / m).mkdir(parents=True, exist_ok=True)
        img = rng.integers(40, 220, (24, 20, 3) if m == "color" else (24, 20), dtype=np.uint8)
        cv2.imwrite(str(folder / m / f"{n}.jpg"), img)


@pytest.fixture
def surf(tmp_path):
    _jpgs(tmp_path / "Training" / "real_part" / "CLKJ_A0001" / "0001", 1)
    _jpgs(tmp_path / "Training" / "fake_part" / "CLKJ_A0001" / "0001-enm", 1)
    lines = ["Training/real_part/CLKJ_A0001/0001/color/1.jpg Training/real_part/CLKJ_A0001/0001/depth/1.jpg "
             "Training/real_part/CLKJ_A0001/0001/ir/1.jpg 1",
             "Training/fake_part/CLKJ_A0001/0001-enm/color/1.jpg Training/fake_part/CLKJ_A0001/0001-enm/depth/1.jpg "
             "Training/fake_part/CLKJ_A0001/0001-enm/ir/1.jpg 0"]
    (tmp_path / "train_list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_casia_surf_list_polarity_and_crops(surf):
    cs = load_list(surf / "train_list.txt", polarity="live=1", domain="surf", params=P)
    assert cs.label.tolist() == [0, 1]  # CASIA-SURF writes 1 = real; ours 1 = attack
    assert cs.rgb.shape == (2, 3, 16, 16) and cs.present.all() and (cs.domain == "surf").all()
    assert cs.species.tolist() == ["bona_fide", "attack"]
    assert np.count_nonzero(cs.depth) > 0


def test_list_errors_name_file_and_line(surf):
    bad = surf / "bad.txt"
    bad.write_text("a.jpg b.jpg c.jpg 1\n\nonly three fields\n")
    with pytest.raises(DatasetError, match=r"bad.txt:3: expected 'color depth ir label'"):
        read_list(bad)
    bad.write_text("a.jpg b.jpg c.jpg yes\n")
    with pytest.raises(DatasetError, match=r"bad.txt:1: label 'yes'"):
        read_list(bad)
    bad.write_text("a.jpg b.jpg c.jpg 1\n")  # parses, but the image is missing
    with pytest.raises(DatasetError, match=r"bad.txt:1: image .*a.jpg does not exist"):
        load_list(bad, params=P)
    with pytest.raises(DatasetError, match="does not exist"):
        read_list(surf / "nope.txt")


def test_mmdg_list_with_attack_polarity(surf):
    # MMDG-style list: same line format; polarity is a parameter, not a guess
    lst = surf / "W-test.txt"
    lst.write_text((surf / "train_list.txt").read_text())
    cs = load_list(lst, polarity="attack=1", params=P)
    assert cs.label.tolist() == [1, 0] and (cs.domain == "W-test").all()


def test_wmca_protocol_and_hdf5(tmp_path):
    csv_path = tmp_path / "grandtest.csv"
    csv_path.write_text("filepath,groundtruth,attacktype,fold\nface-station/01.01.bf,1,,train\n"
                        "face-station/02.print,0,prints,train\nface-station/03.print,0,prints,dev\n")
    rows = read_wmca_protocol(csv_path)
    assert [r["label"] for r in rows] == [0, 1, 1] and rows[1]["species"] == "prints"
    rng = np.random.default_rng(1)
    for r in rows:
        p = tmp_path / "h5" / (r["filepath"] + ".hdf5")
        p.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(p, "w") as h:
            for k in range(5):
                h.create_dataset(f"Frame_{k}/array", data=rng.integers(1, 255, (5, 20, 20), dtype=np.uint8))
    cs = load_wmca_hdf5(rows, tmp_path / "h5", fold="train", frames_per_video=3, params=P)
    assert len(cs) == 6 and cs.label.tolist() == [0, 0, 0, 1, 1, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("filepath,groundtruth,attacktype,fold\nx,maybe,,train\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: groundtruth"):
        read_wmca_protocol(bad)
    bad.write_text("path,label\nx,1\n")
    with pytest.raises(DatasetError, match=r"bad.csv:1: header lacks"):
        read_wmca_protocol(bad)


def test_padisi_npz(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "a.npz", data=rng.integers(0, 255, (2, 20, 20, 22)).astype(np.float32))
    np.savez(tmp_path / "b.npz", data=rng.integers(0, 255, (20, 20, 22)).astype(np.float32))
    cs = load_padisi_npz([(tmp_path / "a.npz", 1, "silicone_mask"), (tmp_path / "b.npz", 0, "")], params=P)
    assert cs.label.tolist() == [1, 1, 0] and cs.species.tolist() == ["silicone_mask"] * 2 + ["bona_fide"]
    np.savez(tmp_path / "c.npz", data=np.zeros((20, 20, 5)))
    with pytest.raises(DatasetError, match="c.npz: data shape"):
        load_padisi_npz([(tmp_path / "c.npz", 1, "x")], params=P)
