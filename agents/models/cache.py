"""On-disk cache of model replies, one small JSON file per key, safe across processes.

The key covers everything that decides a reply: model, endpoint, messages, schema,
generation config (seed included) and the trial seed. A repeated run, or a resumed
one, makes no call it already paid for.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from stagbench.agents.models.base import ChatMessage, GenerateConfig, ModelOutput, OutputSchema


def cache_key(
    model: str,
    base_url: str | None,
    messages: list[ChatMessage],
    config: GenerateConfig,
    schema: OutputSchema | None,
    cache_seed: int | None,
) -> str:
    payload: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "messages": [m.model_dump() for m in messages],
        "config": config.model_dump(exclude={"timeout_s"}),
        "schema": schema.model_dump() if schema else None,
        "seed": cache_seed,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


class ResponseCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> ModelOutput | None:
        path = self._path(key)
        try:
            out = ModelOutput.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.misses += 1
            return None  # missing or damaged: ask the model again
        self.hits += 1
        return out

    def put(self, key: str, output: ModelOutput) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(output.model_dump_json(), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written costs money, not correctness
