"""The depth-to-colour warp of calibration.registration on a torch device: a CUDA GPU (or the CPU, for tests).

Same geometry, the same per-calibration coefficients (taken from the numpy Registrar, uploaded once) and the
same Projector; the z-buffer is torch's scatter_reduce("amin") over every cell of each rectangle (offsets
clamped to the rectangle: a narrower one repeats its last column / row, which changes no minimum). A frame
goes up as its depth (and IR) block and comes back as numpy arrays, so callers see no difference from the
numpy path but the time.
"""

from __future__ import annotations

import numpy as np
import torch

from edge_fas.calibration.registration import EMPTY, LIMIT_PX, MAX_SPLAT, NEAR_PLANE_M, Registrar

__all__ = ["TorchRegistrar"]


def _upload(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """An integer image on the device as int32 (uint16 goes up as int16 bits: torch lacks most uint16 ops)."""
    a = np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return torch.from_numpy(a.view(np.int16)).to(device, non_blocking=True).to(torch.int32) & 0xFFFF
    return torch.from_numpy(a).to(device, non_blocking=True).to(torch.int32)


class TorchRegistrar:
    """Registrar.warp with torch on `device`."""

    def __init__(self, reg: Registrar, device: str | torch.device):
        self.reg, self.device = reg, torch.device(device)
        self.coef = [tuple(torch.from_numpy(a).to(self.device) for a in c) for c in reg.coef]
        self.ir_coef = None if reg.ir_coef is None else tuple(torch.from_numpy(a).to(self.device) for a in reg.ir_coef)

    def _corner(self, k: int, z: torch.Tensor, inner: tuple[slice, slice],
                depth_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, v, in front of the colour camera) of corner k, as Registrar._corner."""
        reg = self.reg
        a_u, a_v, c = (a[inner] for a in self.coef[k])
        b_u, b_v, d = reg.const
        w = c * z + d
        front = w > NEAR_PLANE_M
        w.clamp_(min=NEAR_PLANE_M)
        u, v = (a_u * z + b_u) / w, (a_v * z + b_v) / w
        bound = reg.coordinate_bound(depth_scale)
        if not reg.pinhole:
            if reg.project.kind == "brown_conrady" and bound > 1e3:
                u.clamp_(-1e3, 1e3)
                v.clamp_(-1e3, 1e3)
            reg.project.project_(u, v, 0.5, [torch.empty_like(u) for _ in range(reg.project.SCRATCH)])
        if not reg.pinhole or bound > 2e9:
            u.clamp_(-LIMIT_PX, LIMIT_PX)
            v.clamp_(-LIMIT_PX, LIMIT_PX)
        return u.to(torch.int32), v.to(torch.int32), front  # truncates toward zero, like C

    def warp(self, depth: np.ndarray, depth_scale: float, ir: np.ndarray | None = None,
             ir_separate: np.ndarray | None = None,
             roi: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """As Registrar.warp."""
        (x0, y0, x1, y1), ir_dtype, out_depth, out_ir, block, inner = self.reg.start_frame(roi, ir, ir_separate)
        if block is None:
            return out_depth, out_ir
        d = _upload(depth[block], self.device)
        z = d.to(torch.float32) * float(np.float32(depth_scale))
        u0, v0, front0 = self._corner(0, z, inner, depth_scale)
        u1, v1, front1 = self._corner(1, z, inner, depth_scale)
        keep = (d > 0) & front0 & front1 & (u0 >= x0) & (v0 >= y0) & (u1 < x1) & (v1 < y1) & (u1 >= u0) & (v1 >= v0)
        cols = (u1 - u0).clamp_(0, MAX_SPLAT - 1).to(torch.int64)
        rows = (v1 - v0).clamp_(0, MAX_SPLAT - 1).to(torch.int64)
        key = d.to(torch.int64)
        if ir_dtype is not None:
            values = _upload(ir[block], self.device) if ir is not None else self._ir_lookup(ir_separate, z, block)
            key = (key << 16) | values.to(torch.int64)
        empty = int(EMPTY)
        key = torch.where(keep, key, torch.full_like(key, empty)).reshape(-1)
        rw, rh = x1 - x0, y1 - y0
        # a pixel that does not land writes the empty key from cell 0: a spare run after the image keeps
        # its rectangle in bounds
        base = torch.where(keep, (v0 - y0).to(torch.int64) * rw + (u0 - x0), torch.zeros_like(cols))
        zbuf = torch.full((rw * rh + MAX_SPLAT * (rw + 1),), empty, dtype=torch.int64, device=self.device)
        wide, tall = (int(a.max()) + 1 for a in (cols[keep], rows[keep])) if bool(keep.any()) else (0, 0)
        for dy in range(tall):
            row = base + torch.clamp(rows, max=dy) * rw
            for dx in range(wide):
                zbuf.scatter_reduce_(0, (row + torch.clamp(cols, max=dx)).reshape(-1), key, "amin")
        zbuf = zbuf[:rw * rh].reshape(rh, rw)
        hole = zbuf == empty
        if ir_dtype is not None:
            out_ir[y0:y1, x0:x1] = torch.where(hole, 0, zbuf & 0xFFFF).cpu().numpy().astype(ir_dtype)
            zbuf = zbuf >> 16
        out_depth[y0:y1, x0:x1] = torch.where(hole, 0, zbuf).cpu().numpy().astype(np.uint16)
        return out_depth, out_ir

    def _ir_lookup(self, ir: np.ndarray, z: torch.Tensor, block: tuple[slice, slice]) -> torch.Tensor:
        """IR value at each block pixel's 3D point, for an IR imager that is not the depth imager."""
        reg = self.reg
        qx, qy, qz = (a[block] for a in self.ir_coef)
        tx, ty, tz = reg.ir_const
        pz = qz * z + tz
        front = pz > 0
        pz.clamp_(min=NEAR_PLANE_M)
        u, v = reg.ir_project.pixels((qx * z + tx) / pz, (qy * z + ty) / pz)
        h, w = ir.shape[:2]
        ui = torch.round(u.clamp_(-1.0, w)).to(torch.int64)  # round half to even, as np.rint
        vi = torch.round(v.clamp_(-1.0, h)).to(torch.int64)
        ok = front & (ui >= 0) & (vi >= 0) & (ui < w) & (vi < h)
        image = _upload(ir, self.device).reshape(-1)
        return torch.where(ok, image[(vi.clamp(0, h - 1) * w + ui.clamp(0, w - 1))], 0)
