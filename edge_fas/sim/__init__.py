"""The synthetic RGB-D-IR rig: raw, unregistered colour, depth and IR of real-photo faces and of
presentation attacks, with the rig's calibration and each frame's ground truth.

    from edge_fas.sim import Rig, DOMAINS, SPECIES, make_rig
    frames = Rig("wmca", seed=1).render("rigid_mask", index=0, t=0.0)
    frames = make_rig("rand", seed=1).render("print", index=5)   # the randomised family

Two families of domains: the four named domains (DOMAINS: fixed sensor, light and materials per
domain, one photo identity) and the randomised family (RANDOMIZED_DOMAINS: `rand` for training,
`rand_heldout` for validation on ranges training never draws, and custom range sets), where every
factor is a named, seeded parameter drawn per sample (edge_fas.sim.ranges).

Modules: domains (sensor/light/attack-mix settings per named domain), face_photo (the texture and 3-D
head), identity (the randomised family's identities), presentations (what each species is made of),
render (geometry and sensor models), rig (the Rig of a named domain), ranges (the randomisation
factors and range sets), randomized (the RandomizedRig), scenario (scripted sequences for the
synthetic camera).
"""

import functools
import hashlib
from pathlib import Path

from edge_fas.sim.domains import ATTACK_SPECIES, DOMAIN_TABLE, DOMAINS, SPECIES, Domain, get_domain
from edge_fas.sim.ranges import RANGE_SETS, RangeSet, get_ranges, is_randomized
from edge_fas.sim.render import Pose
from edge_fas.sim.rig import Rig

RANDOMIZED_DOMAINS = tuple(RANGE_SETS)
ALL_DOMAINS = DOMAINS + RANDOMIZED_DOMAINS


def is_domain(name: str, custom: dict | None = None) -> bool:
    """A named domain, a built-in range set of the randomised family, or one of `custom`'s range sets."""
    return name in DOMAINS or name in RANGE_SETS or bool(custom and name in custom)


def make_rig(domain: str = DOMAINS[0], seed: int = 0, width: int = 640, height: int = 480, emitter: bool = True,
             fixed_camera: bool = False, ranges: RangeSet | None = None):
    """The rig for `domain`: a Rig for a named domain, a RandomizedRig for the randomised family.

    fixed_camera: the randomised rig keeps one drawn camera for every sample (a live device) instead of
    a new camera per block of samples (training data). ranges: a custom range set (its name is the domain)."""
    if ranges is not None or is_randomized(domain):
        from edge_fas.sim.randomized import RandomizedRig

        return RandomizedRig(domain, seed=seed, width=width, height=height, emitter=emitter,
                             fixed_camera=fixed_camera, ranges=ranges)
    return Rig(domain, seed=seed, width=width, height=height, emitter=emitter)


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """A short hash of the rig's source code: caches of rendered data key on it, so changing the
    simulator's physics can never silently reuse frames rendered by an older version."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


__all__ = ["fingerprint", "Rig", "Pose", "DOMAINS", "SPECIES", "ATTACK_SPECIES", "DOMAIN_TABLE", "Domain", "get_domain",
           "make_rig", "is_domain", "RANDOMIZED_DOMAINS", "ALL_DOMAINS", "RANGE_SETS", "RangeSet", "get_ranges",
           "is_randomized"]
