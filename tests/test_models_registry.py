"""Registry: every name resolves, unknown names/presets fail with the fix, config rebuilds the model."""

import pytest
import torch

from edge_fas.errors import ConfigError
from edge_fas.models import MODEL_NAMES, build
from edge_fas.models.registry import REQUIRED_ATTRS, builder


def test_model_names_are_the_contract():
    assert set(MODEL_NAMES) == {"mmfas", "mmdg", "spoof_trace", "vit", "resnet50"}


@pytest.mark.parametrize("name", ["mmfas", "vit", "resnet50"])
def test_build_on_meta_has_contract_attributes_and_rebuilds_from_config(name):
    with torch.device("meta"):  # no memory, no init cost: shapes only
        for preset in ("paper", "edge"):
            m = build(name, preset)
            assert all(hasattr(m, a) for a in REQUIRED_ATTRS)
            assert m.name == name and m.preset == preset and isinstance(m.config, dict)
            assert set(m.output_names) <= {"score", "logits", "trace", "uncertainty"} and "score" in m.output_names
            again = build(m.name, m.preset, **m.config)
            assert [(k, v.shape) for k, v in again.state_dict().items()] == [(k, v.shape) for k, v in m.state_dict().items()]
        assert build(name, "edge").input_size < build(name, "paper").input_size


def test_unknown_name_and_preset_name_the_choices():
    with pytest.raises(ConfigError, match="choose one of .*mmfas"):
        build("mmfass")
    with pytest.raises(ConfigError, match="'paper' or 'edge'"):
        build("mmfas", "tiny")


def test_builder_import_is_lazy():
    import sys

    sys.modules.pop("edge_fas.models.baselines", None)
    fn = builder("vit")
    assert fn.__module__ == "edge_fas.models.baselines"


def test_builder_value_errors_become_config_errors():
    with pytest.raises(ConfigError, match="spoof_trace.*widht"):
        build("spoof_trace", "edge", widht=3)
