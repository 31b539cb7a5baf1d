"""The frozen vision tower's states per image, kept so that an image shown again is not run through it again.

A frozen tower maps the same encoded image to the same states, and the questioner meets the same images over and
over: a warm-up epoch of the demo shows about 2,600 distinct candidates in 25,600 slots, and the interactive
evaluation shows each round's top candidates of the same 800-image gallery. Only the tower is skipped; the projector
and the pooling after it still train. Entries are keyed by the encoded bytes themselves (their hash is computed
once per bytes object), so the cache needs no image keys; decoded images (PIL) are always computed. The least
recently used entries go first once `max_bytes` is exceeded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor


class TowerCache:
    """Least-recently-used tower states by encoded image, within `max_bytes` (0 turns the cache off)."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"tower cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.entries: OrderedDict[bytes, Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def states(
        self, images: Sequence[bytes | Image.Image], compute: Callable[[list[bytes | Image.Image]], Tensor]
    ) -> Tensor:
        """[N, tokens, dim] states of `images` in order; `compute` runs the tower on the ones not cached."""
        if not self.max_bytes or not images:
            return compute(list(images))
        new = list(dict.fromkeys(im for im in images if isinstance(im, bytes) and im not in self.entries))
        decoded = [i for i, image in enumerate(images) if not isinstance(image, bytes)]
        batch = [*new, *(images[i] for i in decoded)]
        fresh = compute(batch) if batch else None
        computed = {image: fresh[j] for j, image in enumerate(new)}  # type: ignore[index]
        by_position = {i: fresh[len(new) + j] for j, i in enumerate(decoded)}  # type: ignore[index]
        rows = []
        for i, image in enumerate(images):
            if i in by_position:
                rows.append(by_position[i])
            elif image in computed:
                rows.append(computed[image])
            else:
                rows.append(self.entries[image])  # type: ignore[index]
                self.entries.move_to_end(image)  # type: ignore[arg-type]
        self.misses += len(batch)
        self.hits += len(images) - len(batch)
        for image, states in computed.items():
            self._put(image, states)
        return torch.stack(rows)

    def _put(self, image: bytes, states: Tensor) -> None:
        size = states.numel() * states.element_size()
        if size > self.max_bytes:
            return
        self.entries[image] = states.detach().clone()  # not a view that keeps the whole batch alive
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
