"""``replay/<transcript or run folder>``: answers from recorded model calls.

A call whose messages were recorded gets the recorded raw reply (in recorded order when
the same prompt was asked several times); anything else is an error, so a replay that
drifts from the recording is noticed, not papered over.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict, deque
from pathlib import Path

from agents.models.base import ChatMessage, GenerateConfig, ModelAPI, ModelOutput, OutputSchema
from stagbench.errors import ModelError, TranscriptError


def _key(messages: list[ChatMessage]) -> str:
    blob = json.dumps([m.model_dump() for m in messages], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplayAPI(ModelAPI):
    def __init__(self, source: str) -> None:
        from runs.transcript import ModelCallEvent, read_transcript

        path = Path(source)
        files = sorted((path / "transcripts").glob("*.jsonl")) if path.is_dir() else [path]
        if not files or not files[0].exists():
            raise TranscriptError(f"replay source {source!r} has no transcripts")
        self.replies: dict[str, deque[ModelOutput]] = defaultdict(deque)
        for f in files:
            for e in read_transcript(f).events:
                if isinstance(e, ModelCallEvent) and e.call.raw is not None:
                    self.replies[_key(e.call.messages)].append(
                        ModelOutput(
                            text=e.call.raw,
                            input_tokens=e.call.input_tokens,
                            output_tokens=e.call.output_tokens,
                            model=e.call.model,
                        )
                    )

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        queue = self.replies.get(_key(messages))
        if not queue:
            raise ModelError("replay: this prompt was not recorded (or its replies ran out)")
        return queue.popleft()
