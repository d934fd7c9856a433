"""Scripted sequences for the synthetic camera: which species is in front of the rig at each frame.

Spec grammar (the part after `synthetic:` in `--camera synthetic:...`), comma-separated:

    [NAME][,domain=DOMAIN][,seed=N][,take=SECONDS][,loop=yes|no]

NAME is `demo` (the default: bona fide, then each attack species in turn, then bona fide again, so
the operator sees the verdict flip and recover), `bona_fide`, any attack species alone, `attacks`
(every attack species, no bona fide), or `mixed` (alternating bona fide and each attack).
DOMAIN is a named domain (surf, cefa, wmca, padisi) or a range set of the randomised family (rand,
rand_heldout): there every take is a new identity, light, background and attack material, seen by
one drawn camera for the whole stream.
Examples: `synthetic`, `synthetic:print`, `synthetic:demo,domain=wmca,take=2`, `synthetic:demo,domain=rand,seed=3`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_fas.errors import ConfigError
from edge_fas.sim.domains import ATTACK_SPECIES, DOMAINS, SPECIES
from edge_fas.sim.ranges import RANGE_SETS


@dataclass(frozen=True)
class Take:
    species: str
    duration_s: float
    index: int  # the rig sample played (subject, pose, distance, light)


@dataclass(frozen=True)
class Scenario:
    name: str
    takes: tuple[Take, ...]
    domain: str = DOMAINS[0]
    seed: int = 0
    loop: bool = True

    @property
    def duration_s(self) -> float:
        return sum(t.duration_s for t in self.takes)

    def at(self, seconds: float) -> tuple[int, Take, float] | None:
        """(take number, take, seconds into the take) at `seconds` from the start; None when finished."""
        total = self.duration_s
        lap = 0
        if self.loop:
            lap = int(seconds // total)
            seconds -= lap * total
        elif seconds >= total:
            return None
        for number, take in enumerate(self.takes):
            if seconds < take.duration_s:
                # a new lap plays new samples of the same species
                return lap * len(self.takes) + number, Take(take.species, take.duration_s,
                                                            take.index + lap * len(self.takes)), seconds
            seconds -= take.duration_s
        last = self.takes[-1]
        return len(self.takes) - 1, last, last.duration_s


def _takes(species: list[str], take_s: float, bona_fide_s: float) -> tuple[Take, ...]:
    return tuple(Take(s, bona_fide_s if s == "bona_fide" else take_s, i) for i, s in enumerate(species))


def parse_scenario(spec: str | None) -> Scenario:
    parts = [p.strip() for p in (spec or "").split(",") if p.strip()]
    name = "demo"
    options: dict[str, str] = {}
    for part in parts:
        if "=" in part:
            key, value = (x.strip() for x in part.split("=", 1))
            options[key.lower()] = value
        else:
            name = part.lower()
    unknown = set(options) - {"domain", "seed", "take", "loop"}
    if unknown:
        raise ConfigError(f"synthetic camera option {sorted(unknown)[0]!r} is unknown; expected domain=, seed=, "
                          f"take=, loop= (e.g. synthetic:demo,domain=wmca,take=2)")
    domain = options.get("domain", DOMAINS[0])
    if domain not in DOMAINS and domain not in RANGE_SETS:
        raise ConfigError(f"synthetic camera domain {domain!r} is unknown; expected one of "
                          f"{', '.join(DOMAINS + tuple(RANGE_SETS))}")
    try:
        seed = int(options.get("seed", 0))
        take_s = float(options.get("take", 3.0))
    except ValueError:
        raise ConfigError(f"synthetic camera: seed must be an integer and take a number of seconds, got "
                          f"seed={options.get('seed')!r} take={options.get('take')!r}") from None
    if take_s <= 0:
        raise ConfigError(f"synthetic camera: take={take_s} must be > 0 seconds")
    loop = options.get("loop", "yes").lower() in ("yes", "true", "1", "on")
    if name == "demo":
        species = ["bona_fide", *ATTACK_SPECIES, "bona_fide"]
    elif name == "attacks":
        species = list(ATTACK_SPECIES)
    elif name == "mixed":
        species = [s for a in ATTACK_SPECIES for s in ("bona_fide", a)]
    elif name in SPECIES:
        species = [name]
    else:
        raise ConfigError(f"synthetic scenario {name!r} is unknown; expected demo, attacks, mixed or a species "
                          f"({', '.join(SPECIES)})")
    return Scenario(name=name, takes=_takes(species, take_s, take_s * 4 / 3), domain=domain, seed=seed, loop=loop)
