"""Named protocols: every one resolves to its list files on a tree in the releases' layouts; the
synthetic stand-ins only when asked for."""

import shutil

import numpy as np
import pytest

from edge_fas.data.build import DataOptions, split_records, records_of_test_sets
from edge_fas.data.crops import CropSet
from edge_fas.data.protocols import PROTOCOLS, get_protocol
from edge_fas.data.records import DatasetError
from edge_fas.errors import ConfigError
from edge_fas.training import drop_modalities, protocol_config
from fas_tree import make_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("data"))


def test_the_papers_protocols_are_all_there():
    names = set(PROTOCOLS)
    assert sum(n.startswith("mmdg-p1-") for n in names) == 4 and sum(n.startswith("mmdg-p2-") for n in names) == 12
    assert {"mmdg-p3-cw-ps", "mmdg-p3-ps-cw", "mmfas-cross", "wmca-grandtest", "casia-surf"} <= names
    assert sum(n.startswith("wmca-loo-") for n in names) == 7
    assert {n for n in names if n.startswith("cefa-")} == {f"cefa-{k}" for k in
                                                           ("1.1", "1.3", "1.5", "2.1", "2.2", "4.1", "4.3", "4.5")}
    p = get_protocol("mmdg-p1-cps-w")
    assert p.train == ("C", "P", "S") and p.test == ("W",) and p.datasets == ["cefa", "padisi", "surf"]
    assert p.list_files() == [f"MMDG-Benchmark/{x}-{s}.txt" for s in ("train", "val") for x in "CPS"] + \
        ["MMDG-Benchmark/W-test.txt"]
    flex = get_protocol("mmfas-cross")
    assert flex.train == ("S", "C") and len(flex.tests) == 10 and flex.average == ("cefa", "surf", "wmca")
    with pytest.raises(ConfigError, match="unknown protocol"):
        get_protocol("mmdg-p9")


@pytest.mark.parametrize("name", sorted(n for n, p in PROTOCOLS.items() if p.real))
def test_every_protocol_resolves_on_the_release_layouts(tree, name):
    p = get_protocol(name)
    opts = DataOptions(tree)
    train, files = split_records(p, "train", opts)
    val, _ = split_records(p, "val", opts)
    assert {r.label for r in train} == {0, 1} and {r.label for r in val} == {0, 1}
    assert all(f.is_file() for f in files) and {r.dataset for r in train} == set(p.datasets)
    tests = records_of_test_sets(p, opts)
    assert set(tests) == set(p.tests)
    for recs, _ in tests.values():
        assert {r.label for r in recs} == {0, 1}
        # every attack has its PAI species (MMDG's renamed PADISI files carry none unless the npz has a code)
        assert all(r.species != "attack" for r in recs if r.label and r.dataset != "padisi")
    if p.missing_at_test:
        assert name.startswith("mmdg-p2-")


def test_lists_folder_and_missing_list_errors(tree, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    for f in ("C", "P", "S", "W"):  # a flat --lists folder works as well as the repository's layout
        for s in ("train", "val", "test"):
            shutil.copy(tree / "MMDG-Benchmark" / f"{f}-{s}.txt", lists)
    p = get_protocol("mmdg-p1-cps-w")
    recs, files = split_records(p, "train", DataOptions(tree, lists=lists))
    assert files[0] == lists / "C-train.txt" and len(recs) == 12
    (lists / "W-test.txt").unlink()
    with pytest.raises(DatasetError, match=r"MMDG-Benchmark/W-test.txt is missing: .*github.com/OMGGGGG/mmdg"):
        records_of_test_sets(p, DataOptions(tree, lists=lists))
    with pytest.raises(DatasetError, match="data root .*nowhere does not exist"):
        DataOptions.from_config({"root": str(tmp_path / "nowhere")})
    with pytest.raises(DatasetError, match="grandtest.csv is missing: .*CASIA-FAS-Dataset"):
        split_records(get_protocol("wmca-grandtest"), "train", DataOptions(tmp_path))


def test_synthetic_stand_ins_only_when_asked():
    cfg = protocol_config("mmdg-p2-psw-c-no-depth", "mmdg")
    assert cfg["data"]["source"] == "synthetic"
    assert cfg["data"]["train_domains"] == ["padisi", "surf", "wmca"] and cfg["data"]["test_domains"] == ["cefa"]
    assert cfg["data"]["test_missing"] == ["depth"] and cfg["model"]["name"] == "mmdg"
    assert protocol_config("mmdg-p3-cw-ps", "mmfas")["data"]["test_domains"] == ["padisi", "surf"]
    assert protocol_config("mmfas-cross", "mmfas")["data"]["train_domains"] == ["surf", "cefa"]
    assert protocol_config("wmca-grandtest", "mmfas")["data"]["test_domains"] == ["wmca"]
    with pytest.raises(ConfigError, match="no synthetic stand-in"):
        protocol_config("wmca-loo-prints", "mmfas")
    with pytest.raises(ConfigError, match="reads the real datasets: pass --data-root DIR"):
        protocol_config("mmdg-p1-cps-w", "mmfas", synthetic=False)
    real = protocol_config("mmdg-p1-cps-w", "mmdg", synthetic=False, root="/data")
    assert real["data"]["source"] == "datasets" and real["data"]["protocol"] == "mmdg-p1-cps-w"
    assert real["data"]["train_domains"] == ["cefa", "padisi", "surf"] and real["data"]["test_domains"] == ["wmca"]
    # the synthetic LODO protocols exist on the rig only: they never need a data root
    assert protocol_config("synthetic-lodo-wmca", "mmfas", synthetic=False)["data"]["source"] == "synthetic"


def test_drop_modalities_for_protocol_2():
    n = 3
    cs = CropSet(np.ones((n, 3, 4, 4), np.float16), np.ones((n, 1, 4, 4), np.float16), np.ones((n, 1, 4, 4), np.float16),
                 np.ones((n, 3), bool), np.array([0, 1, 1]), np.array(["bona_fide", "print", "print"]),
                 np.array(["cefa"] * n))
    out = drop_modalities(cs, ["depth", "ir"])
    assert out.present.tolist() == [[True, False, False]] * n and not out.depth.any() and out.rgb.all()
    assert cs.depth.all()  # the original is untouched
    with pytest.raises(ConfigError, match="unknown modality"):
        drop_modalities(cs, ["thermal"])
