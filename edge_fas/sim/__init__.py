"""The synthetic RGB-D-IR rig: raw, unregistered colour, depth and IR of real-photo faces and of
presentation attacks, with the rig's calibration and each frame's ground truth.

    from edge_fas.sim import Rig, DOMAINS, SPECIES
    frames = Rig("wmca", seed=1).render("rigid_mask", index=0, t=0.0)

Modules: domains (sensor/light/attack-mix settings per domain), face_photo (the texture and 3-D
head), presentations (what each species is made of), render (geometry and sensor models), rig (the
Rig), scenario (scripted sequences for the synthetic camera).
"""

import functools
import hashlib
from pathlib import Path

from edge_fas.sim.domains import ATTACK_SPECIES, DOMAIN_TABLE, DOMAINS, SPECIES, Domain, get_domain
from edge_fas.sim.render import Pose
from edge_fas.sim.rig import Rig


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """A short hash of the rig's source code: caches of rendered data key on it, so changing the
    simulator's physics can never silently reuse frames rendered by an older version."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


__all__ = ["fingerprint", "Rig", "Pose", "DOMAINS", "SPECIES", "ATTACK_SPECIES", "DOMAIN_TABLE", "Domain", "get_domain"]
