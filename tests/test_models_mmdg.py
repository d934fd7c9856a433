"""MMDG: ReGrad's four cases, UEM, U-Adapter gating, SSP loss, the model contract."""

import pytest
import torch

from edge_fas.models.mmdg import regrad

T = torch.tensor


def test_regrad_slow_owner_agreeing_others_add_their_projection():
    # losses: RGB fast (0.1); owner depth (1) slow. g_rgb agrees with g_depth, g_ir agrees too.
    g = [T([1.0, 1.0]), T([2.0, 0.0]), T([1.0, -3.0])]
    out = regrad(g, [0.1, 0.5, 0.9], [0.5, 0.7, 0.25], owner=1)
    # proj of g_rgb on g_depth = (1,0); proj of g_ir on g_depth = (1,0)
    assert torch.allclose(out, T([2.0 + 0.5 * 1 + 0.25 * 1, 0.0]))


def test_regrad_slow_owner_conflicting_other_adds_only_orthogonal_part():
    g = [T([-1.0, 2.0]), T([2.0, 0.0]), T([0.0, 0.0])]
    out = regrad(g, [0.1, 0.5, 0.9], [0.5, 0.7, 0.25], owner=1)
    # g_rgb . g_depth < 0: orthogonal part of g_rgb is (0, 2); g_ir zero contributes its (zero) orthogonal part
    assert torch.allclose(out, T([2.0, 0.5 * 2.0]))


def test_regrad_fast_owner_agreeing_is_projected_and_scaled():
    g = [T([3.0, 1.0]), T([1.0, 0.0]), T([1.0, 0.0])]
    out = regrad(g, [0.1, 0.5, 0.9], [0.5, 0.7, 0.25], owner=0)
    s = T([2.0, 0.0])
    # g_rgb . s > 0 -> projection (3, 0), scaled by c_rgb 0.5, plus the others unchanged
    assert torch.allclose(out, 0.5 * T([3.0, 0.0]) + s)


def test_regrad_fast_owner_conflicting_keeps_orthogonal_part():
    g = [T([-3.0, 1.0]), T([1.0, 0.0]), T([1.0, 0.0])]
    out = regrad(g, [0.9, 0.5, 0.1], [0.5, 0.7, 0.25], owner=2)  # IR fast now
    # owner IR: g_ir=(1,0), s=g_rgb+g_depth=(-2,1); g_ir.s<0 -> orthogonal part of g_ir to s
    s = T([-2.0, 1.0])
    orth = T([1.0, 0.0]) - (-2.0 / 5.0) * s
    assert torch.allclose(out, 0.25 * orth + s)
    assert abs(float((orth * s).sum())) < 1e-6


def test_regrad_shared_parameter_follows_the_fast_modality_and_checks_inputs():
    g = [T([[1.0, 2.0]]), T([[0.5, 0.0]]), T([[0.0, 1.0]])]
    shared = regrad(g, [0.3, 0.2, 0.9], [0.5, 0.4, 0.25], owner=None)
    assert torch.allclose(shared, regrad(g, [0.3, 0.2, 0.9], [0.5, 0.4, 0.25], owner=1))
    assert shared.shape == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        regrad([T([1.0]), T([1.0, 2.0]), T([1.0])], [0, 1, 2], [1, 1, 1], owner=0)
    with pytest.raises(ValueError, match="owner"):
        regrad(g, [0, 1, 2], [1, 1, 1], owner=3)
