"""The dataset readers on fixture trees in each release's layout (tests/fas_tree.py writes them)."""

import cv2
import h5py
import numpy as np
import pytest

from edge_fas.data import casia_surf, cefa, padisi, species, wmca
from edge_fas.data.build import DataOptions, ref_records
from edge_fas.data.lists import read_list
from edge_fas.data.protocols import get_protocol
from edge_fas.data.records import DatasetError, Record, load, load_crops
from edge_fas.preprocess import PreprocessParams
from fas_tree import make_tree

P = PreprocessParams(size=16)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("data"))


def test_species_tables():
    assert species.wmca_species(0, 0) == "bona_fide"
    assert [species.wmca_species(t, p) for t, p in ((2, 1), (2, 9), (2, 12), (2, 85), (1, 2), (1, 15), (3, 4), (3, 5),
                                                    (4, 18))] == \
        ["fake_head", "paper_mask", "rigid_mask", "flexible_mask", "rigid_mask", "glasses", "print", "replay", "replay"]
    assert species.casia_surf_species("04_en_b.rssdk") == "print_cut_eyes_nose_bent"
    assert species.casia_surf_species("real.rssdk") == "bona_fide" and species.casia_surf_species("x.rssdk") is None
    assert [species.cefa_species(v) for v in ("1_000_1_1_1", "3_120_3_2_2", "2_017_3_1_3", "2_017_3_1_4")] == \
        ["bona_fide", "print_cloth", "print_photo", "replay"]
    assert species.cefa_species("1_002_1_1_2_1_3", "3D-Mask") == "rigid_mask"
    assert species.cefa_species("2_001_1_1_2_1_3", "Silicone-Mask") == "flexible_mask"
    assert species.padisi_species("m00000") == "bona_fide" and species.padisi_species("m50602") == "padisi_pai_06"
    # every species maps onto a synthetic-rig family except PADISI's unpublished codes
    assert species.family("flexible_mask") == "flexible_mask" and species.family("print_cut_eyes_flat") == "print"
    assert species.family("glasses") == "partial" and species.family("padisi_pai_03") is None
    # the rig's own species are families, and a family head's class index names each (-1: the source does not say)
    assert species.family("partial") == "partial" and species.family_index("bona_fide") == 0
    assert species.FAMILIES[species.family_index("fake_head")] == "rigid_mask"
    assert species.FAMILIES[species.family_index("print_photo")] == "print" and species.family_index("padisi_pai_03") == -1


def test_casia_surf_own_release_and_lists(tree):
    pr = get_protocol("casia-surf")
    opts = DataOptions(tree)
    train, path = ref_records(pr.lists["train"][0], opts)
    assert path.name == "train_list.txt" and [r.label for r in train] == [0, 1, 1, 0]  # the list's 1 = bona fide
    assert [r.species for r in train] == ["bona_fide", "print_cut_eyes_flat", "print_cut_eyes_nose_mouth_bent",
                                          "bona_fide"]
    val, _ = ref_records(pr.lists["val"][0], opts)
    assert [r.species for r in val] == ["bona_fide", "print", "print", "bona_fide"]  # anonymised: the cut is unknown
    cs = load_crops(val, P)
    assert cs.rgb.shape == (4, 3, 16, 16) and cs.present.all() and (cs.domain == "surf").all()
    assert cs.path[1] == "Val/0000/000001-color.jpg" and np.count_nonzero(cs.depth) > 0


def test_cefa_reissued_video_and_image_lists(tree):
    opts = DataOptions(tree, frames_per_video=3)
    recs, path = ref_records(get_protocol("cefa-2.1").lists["train"][0], opts)
    assert path.name == "CASIA_CeFA@p2.1_video_train.txt"  # no image list for 2.1 in the tree: the video list
    assert len(recs) == 12 and [r.label for r in recs[:3]] == [0, 0, 0]  # 0 = live in the re-issue
    assert recs[3].species == "print_cloth" and recs[6].species == "replay"
    assert [r.listed.rsplit("/", 1)[1] for r in recs[:3]] == ["0001.jpg", "0003.jpg", "0004.jpg"]  # first, middle, last of 4
    assert recs[0].files[1].endswith("/depth/0001.jpg") and recs[0].files[2].endswith("/ir/0001.jpg")
    recs, path = ref_records(get_protocol("cefa-4.1").lists["train"][0], opts)
    assert path.name == "CASIA_CeFA@p4.1_image_train.txt" and len(recs) == 4  # the image list is preferred
    test, _ = ref_records(get_protocol("cefa-1.1").tests["cefa"][0], opts)
    assert "rigid_mask" in {r.species for r in test}
    # a line written CeFA/... where the tree is CASIA_CeFA/... (a quirk of the re-issued lists) still resolves
    lst = tree / "typo.txt"
    lst.write_text("CeFA/Ethnicity/AF/AF-000/1_000_3_1_2/color 1\n")
    (line,) = read_list(lst)
    (r0, *_) = cefa.records(line, "attack=1", tree, 1)
    assert "CASIA_CeFA/Ethnicity" in r0.files[0] and r0.species == "print_cloth"


def test_wmca_partition_and_leave_one_out(tree):
    rows = wmca.read_partition(tree / "WMCA" / "grandtest.csv")
    assert {r.split for r in rows} == {"train", "val", "test"}
    test = wmca.select(rows, "test")
    assert {r.species for r in test} >= {"fake_head", "glasses", "paper_mask", "rigid_mask", "flexible_mask"}
    loo_train = wmca.select(rows, "train", loo="print")
    loo_test = wmca.select(rows, "test", loo="print")
    assert "print" not in {r.species for r in loo_train} and {r.species for r in loo_test} == {"bona_fide", "print"}
    bad = tree / "bad.csv"
    bad.write_text(",client_id,filepath,group,label\n1,2,face-station/x/002_01_000_0_00,train,attack/2D/prints\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: label 'attack/2D/prints' contradicts the file name"):
        wmca.read_partition(bad)
    bad.write_text(",client_id,filepath,group,label\n1,2,face-station/x/002_01_000_3_01,holdout,attack\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: group 'holdout'"):
        wmca.read_partition(bad)
    bad.write_text("path,groundtruth\nx,1\n")
    with pytest.raises(DatasetError, match=r"bad.csv:1: header lacks column"):
        wmca.read_partition(bad)


def test_wmca_preprocessed_pair_both_bob_layouts(tree):
    rows = wmca.select(wmca.read_partition(tree / "WMCA" / "grandtest.csv"), "train")
    recs = wmca.video_records(rows, tree / "WMCA", "preprocessed", frames_per_video=2)
    assert len(recs) == 2 * len(rows) and recs[0].files[0].endswith("preprocessed-face-station_RGB/face-station/"
                                                                     "17.01.18/002_01_000_0_00.hdf5")
    cs = load_crops(recs, P)  # the fixture mixes Frame_<n>/array files and (T, C, H, W) 'data' files
    assert len(cs) == len(recs) and cs.present.all() and set(cs.label.tolist()) == {0, 1}
    with h5py.File(tree / "flat.hdf5", "w") as h:
        h.create_dataset("Frame_0/array", data=np.zeros((5, 5), np.uint8))
    bad = Record("wmca_preprocessed", (str(tree / "flat.hdf5"), recs[0].files[1]), 1, "print", "wmca", "x", "g.csv:9")
    with pytest.raises(DatasetError, match=r"g.csv:9: .*flat.hdf5 frame shape \(5, 5\), expected \(3, H, W\)"):
        load(bad, P)
    with pytest.raises(DatasetError, match="no file for face-station/x/009_01_000_0_00"):
        wmca.video_records([wmca.PartitionRow("face-station/x/009_01_000_0_00", "train", 0, "bona_fide", "g.csv:3")],
                           tree / "WMCA")


def test_wmca_raw_full_frames_go_through_the_live_detector(tmp_path):
    from edge_fas.data.synthetic import register
    from edge_fas.sim import Rig

    f = register(Rig("wmca", seed=0, width=320, height=240).render("bona_fide", 3, 0.5))
    frame = np.concatenate([f.rgb.transpose(2, 0, 1), f.depth[None].astype(np.uint16), f.ir[None].astype(np.uint16)])
    path = tmp_path / "face-station" / "17.01.18" / "002_01_000_0_00.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as h:
        h.create_dataset("Frame_0/array", data=frame)
        h.create_dataset("Frame_1/array", data=np.zeros_like(frame))  # no face in it
    rows = [wmca.PartitionRow("face-station/17.01.18/002_01_000_0_00", "test", 0, "bona_fide", "g.csv:2")]
    recs = wmca.video_records(rows, tmp_path, "raw", frames_per_video=2)
    cs = load_crops(recs, P)
    assert len(cs) == 1 and cs.meta["skipped_no_face"] == 1  # the blank frame is counted, not cropped
    assert cs.present.all() and np.count_nonzero(cs.depth) > 0


def test_padisi_npz_channels_first_zero_to_one(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "PADISI").mkdir()
    data = rng.uniform(0.1, 0.9, (1, 22, 40, 32)).astype(np.float32)
    np.savez(tmp_path / "PADISI" / "z0000001.npz", data=data)
    np.savez(tmp_path / "PADISI" / "z0000002.npz", data=data, pai_code=np.array("m50602"))
    lst = tmp_path / "P-test.txt"
    lst.write_text("z0000001.npz\t1\nz0000002.npz\t0")
    recs = [r for line in read_list(lst) for r in padisi.records(line, "live=1", tmp_path)]
    assert [(r.label, r.species) for r in recs] == [(0, "bona_fide"), (1, "padisi_pai_06")]
    crop = load(recs[0], P)
    # 0-1 floats are scaled, not truncated to 0 (BGR -> RGB, NIR and depth kept)
    expect = cv2.resize(np.round(data[0, 2] * 255).astype(np.uint8), (16, 16), interpolation=cv2.INTER_AREA)
    got = np.round((crop.rgb[0] * P.rgb_std[0] + P.rgb_mean[0]) * 255)
    assert np.abs(got - expect).max() <= 1 and crop.ir.std() > 0.5 and np.count_nonzero(crop.depth) > 100
    np.savez(tmp_path / "PADISI" / "last.npz", data=np.moveaxis(data, 1, -1))  # channels last: not the release
    with pytest.raises(DatasetError, match=r"data shape \(1, 40, 32, 22\), expected \(frames, 22, H, W\)"):
        load(Record("padisi_npz", (str(tmp_path / "PADISI" / "last.npz"),), 1, "attack", "padisi", "x", "P:1"), P)
    np.savez(tmp_path / "PADISI" / "big.npz", data=data * 255)
    with pytest.raises(DatasetError, match="normalises every channel to 0-1"):
        load(Record("padisi_npz", (str(tmp_path / "PADISI" / "big.npz"),), 1, "attack", "padisi", "x", "P:1"), P)
    lst.write_text("z0000002.npz\t1\n")  # carries an attack code but the list says bona fide
    with pytest.raises(DatasetError, match="carries code m50602"):
        padisi.records(read_list(lst)[0], "live=1", tmp_path)
    lst.write_text("missing.npz\t1\n")
    with pytest.raises(DatasetError, match=r"P-test.txt:1: missing.npz is in neither"):
        padisi.records(read_list(lst)[0], "live=1", tmp_path)


def test_missing_and_unreadable_images_name_the_list_line(tree, tmp_path):
    lst = tmp_path / "S-test.txt"
    lst.write_text("CASIA-SURF-CROP/real_part/x/CLKJ_AS0001/real.rssdk/color/1.jpg "
                   "CASIA-SURF-CROP/real_part/x/CLKJ_AS0001/real.rssdk/depth/1.jpg "
                   "CASIA-SURF-CROP/real_part/x/CLKJ_AS0001/real.rssdk/ir/1.jpg 1\r\n")
    with pytest.raises(DatasetError, match=r"S-test.txt:1: image .*color/1.jpg does not exist; check the data root"):
        casia_surf.records(read_list(lst)[0], "live=1", tmp_path)
    swapped = lst.read_text().replace("color/1.jpg", "TMP").replace("depth/1.jpg", "color/1.jpg").replace("TMP", "depth/1.jpg")
    lst.write_text(swapped)
    with pytest.raises(DatasetError, match=r"S-test.txt:1: field 1 is a depth image .* fix the line's field order"):
        casia_surf.records(read_list(lst)[0], "live=1", tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"W-test.txt:4: image .*broken.jpg could not be decoded"):
        load(Record("images", (str(broken),) * 3, 0, "bona_fide", "wmca", "x", "W-test.txt:4"), P)


def test_detection_on_released_crops_when_asked(tree):
    # data.detect: the live detector frames the crop; on a crop with no detectable face the whole image is used
    recs, _ = ref_records(get_protocol("mmdg-p1-cps-w").tests["wmca"][0], DataOptions(tree))
    plain = load_crops(recs[:2], P)
    detected = load_crops(recs[:2], P, detect=True)
    assert detected.rgb.shape == plain.rgb.shape and detected.present.all()
