"""Model replies remembered on disk, so a long generation job that is stopped asks nothing twice when it resumes.

One JSON object per line, {"key": sha256 of (model, request), "reply": str}, appended and flushed per batch. A
line cut short by a kill is skipped when read back (its request is simply asked again).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path


class ReplyCache:
    """Replies of one model by request text; `ask` sends only the requests it has not seen."""

    def __init__(self, path: Path | str, model: str):
        self.path = Path(path)
        self.model = model
        self.replies: dict[str, str] = {}
        self.asked = 0  # requests sent to the model by this object
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.replies[entry["key"]] = entry["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a kill

    def key(self, request: str) -> str:
        return hashlib.sha256(f"{self.model}\n{request}".encode()).hexdigest()

    def ask(self, requests: Sequence[str], send: Callable[[list[str]], list[str]]) -> list[str]:
        """The reply to each request: remembered, or from `send(missing)` (one call, order kept), then saved."""
        keys = [self.key(r) for r in requests]
        missing = list(dict.fromkeys((k, r) for k, r in zip(keys, requests, strict=True) if k not in self.replies))
        if missing:
            replies = send([r for _, r in missing])
            if len(replies) != len(missing):
                raise ValueError(f"{len(missing)} requests got {len(replies)} replies")
            self.asked += len(missing)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                for (key, _), reply in zip(missing, replies, strict=True):
                    file.write(json.dumps({"key": key, "reply": reply}) + "\n")
                    self.replies[key] = reply
                file.flush()
                os.fsync(file.fileno())
        return [self.replies[k] for k in keys]
