"""Seed derivation: every random choice draws from its own stream, named by a path of parts.

Nothing then depends on generation order: a resumed or reordered run (a world, an instruction set, a witness's
choice of words) makes the same choices.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed from the world seed and a path of names/indices.

    Every random choice draws from its own derived stream, so nothing depends on generation order:
    a resumed or reordered run makes the same identities, texts and pixels.
    """
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def derive_rng(seed: int, *parts: object) -> random.Random:
    return random.Random(derive_seed(seed, *parts))
