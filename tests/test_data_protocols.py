"""Named protocols and their synthetic stand-ins."""

import numpy as np
import pytest

from edge_fas.data.crops import CropSet
from edge_fas.data.protocols import PROTOCOLS, get_protocol, protocol_config
from edge_fas.errors import ConfigError
from edge_fas.training import drop_modalities


def test_mmdg_protocols_map_to_synthetic_domains():
    p = get_protocol("mmdg-p1-cps-w")
    assert p.train == ("C", "P", "S") and p.test == ("W",)
    assert p.synthetic() == (["cefa", "padisi", "surf"], ["wmca"])
    assert sum(n.startswith("mmdg-p1-") for n in PROTOCOLS) == 4
    assert sum(n.startswith("mmdg-p2-") for n in PROTOCOLS) == 12
    cfg = protocol_config("mmdg-p2-psw-c-no-depth", "mmdg")
    assert cfg["data"]["train_domains"] == ["padisi", "surf", "wmca"] and cfg["data"]["test_domains"] == ["cefa"]
    assert cfg["data"]["test_missing"] == ["depth"] and cfg["model"]["name"] == "mmdg"
    assert protocol_config("mmdg-p3-cw-ps", "mmfas")["data"]["test_domains"] == ["padisi", "surf"]


def test_real_only_protocols_and_unknown_names():
    # same-dataset protocols run intra-domain on the synthetic splits (disjoint sample indices)
    assert protocol_config("wmca-grandtest", "mmfas")["data"]["test_domains"] == ["wmca"]
    assert protocol_config("mmfas-cross", "mmfas")["data"]["test_domains"] == ["cefa", "surf", "wmca"]
    with pytest.raises(ConfigError, match="unknown protocol"):
        get_protocol("mmdg-p9")


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
