"""Take labels, one rule for every writer of recordings (`record`, `collect`, `run --record`, the session
format): the species vocabulary, pseudonymous subject ids and consent.

Label convention: 0 = bona fide, 1 = attack; the label follows from the species.
"""

from __future__ import annotations

import difflib
import re
import secrets

BONA_FIDE = "bona_fide"
SPECIES = (BONA_FIDE, "print", "replay", "rigid_mask", "paper_mask", "flexible_mask", "partial")
ATTACK_SPECIES = SPECIES[1:]
# Pseudonymous ids only: a letter or digit, then letters, digits, '-' and '_' (no spaces, dots or '@',
# so no names or e-mail addresses), 2 to 32 characters.
SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")


def new_subject_id() -> str:
    """A fresh random pseudonym such as 'S-3f9a1c'; the operator keeps any mapping to people offline."""
    return "S-" + secrets.token_hex(3)


def label_of(species: str) -> int:
    return 0 if species == BONA_FIDE else 1


def species_problem(species) -> str | None:
    """Why `species` is not a species name (None when it is one), with the nearest name as a hint."""
    if species in SPECIES:
        return None
    near = difflib.get_close_matches(str(species), SPECIES, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"species {species!r} is unknown{hint}; choose one of {', '.join(SPECIES)}"


def subject_problem(subject_id) -> str | None:
    if SUBJECT_ID.match(subject_id or ""):
        return None
    return (f"subject id {subject_id!r} is not a pseudonym: use 2-32 letters, digits, '-' or '_' (for example "
            f"{new_subject_id()}), never a name or e-mail address")


def consent_problem(consent: bool, synthetic: bool) -> str | None:
    """Every take from a real camera, or from a recording of one, shows a person (the subject, or whoever
    presents the attack, whose face a print or a mask may also carry): it needs their consent. Only the
    synthetic rig shows nobody."""
    if consent or synthetic:
        return None
    return ("every take from a real camera or a recording shows a person: confirm their consent is on file "
            "(--consent on the command line, the consent box in the app)")
