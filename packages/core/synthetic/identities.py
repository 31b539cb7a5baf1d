"""Drawing the synthetic world's identities and their changes of clothes from the attribute vocabulary."""

from __future__ import annotations

import random
from collections.abc import Mapping

from ireid.core.seeding import derive_rng
from ireid.core.vocabulary.attributes import OUTFIT_ATTRIBUTES, SPECS, attribute_tuple, clothes_differ


def sample_attributes(rng: random.Random) -> dict[str, str]:
    """One identity's full attribute tuple, honouring the conditional weights."""
    chosen: dict[str, str] = {}
    for spec in SPECS:
        chosen[spec.name] = rng.choices(spec.values, weights=spec.weights_for(chosen))[0]
    return chosen


def sample_outfit(person: Mapping[str, str], rng: random.Random) -> dict[str, str]:
    """`person` with every `OUTFIT_ATTRIBUTES` value re-drawn (conditional weights still follow gender)."""
    chosen: dict[str, str] = {}
    for spec in SPECS:
        if spec.name in OUTFIT_ATTRIBUTES:
            chosen[spec.name] = rng.choices(spec.values, weights=spec.weights_for(chosen))[0]
        else:
            chosen[spec.name] = person[spec.name]
    return chosen


def sample_identities(seed: int, count: int) -> list[dict[str, str]]:
    """`count` identities with pairwise different attribute tuples (duplicates are redrawn).

    Identity i draws from streams derived from (seed, i, attempt), so the first n identities of a
    larger world equal those of a smaller one with the same seed.
    """
    seen: set[tuple[str, ...]] = set()
    identities = []
    for index in range(count):
        for attempt in range(1000):
            attributes = sample_attributes(derive_rng(seed, "identity", index, attempt))
            key = attribute_tuple(attributes)
            if key not in seen:
                break
        else:
            raise RuntimeError(f"could not draw a new attribute tuple for identity {index}: vocabulary exhausted")
        seen.add(key)
        identities.append(attributes)
    return identities


def sample_outfits(seed: int, identities: list[dict[str, str]], count: int) -> list[tuple[dict[str, str], ...]]:
    """Every identity's `count` outfits: its own attributes first, then `count - 1` changes of clothes.

    A new outfit is redrawn until its clothes differ from each earlier outfit of the person and its whole tuple
    differs from every outfit in the world, so a full description still identifies one person in one outfit.
    """
    if count < 1:
        raise ValueError(f"outfits per identity must be at least 1, got {count}")
    seen = {attribute_tuple(a) for a in identities}
    outfits = []
    for index, person in enumerate(identities):
        worn = [dict(person)]
        for outfit in range(1, count):
            for attempt in range(1000):
                candidate = sample_outfit(person, derive_rng(seed, "outfit", index, outfit, attempt))
                if attribute_tuple(candidate) not in seen and all(clothes_differ(candidate, w) for w in worn):
                    break
            else:
                raise RuntimeError(f"could not draw outfit {outfit} of identity {index}: vocabulary exhausted")
            seen.add(attribute_tuple(candidate))
            worn.append(candidate)
        outfits.append(tuple(worn))
    return outfits
