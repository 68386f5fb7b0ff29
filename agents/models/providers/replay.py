"""``replay/<transcript or run folder>``: answers from recorded model calls.

A call whose messages were recorded gets the recorded raw reply. A prompt recorded with
different replies (asked again within a trial, or in several trials of a run folder) is
answered in recorded order when it comes from one transcript, and is an error when it
comes from several, since nothing tells which trial is being replayed. Anything not
recorded is an error too: a replay that drifts from its recording is noticed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict, deque
from pathlib import Path

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.errors import ModelError, TranscriptError


def _key(messages: list[ChatMessage]) -> str:
    blob = json.dumps([m.model_dump() for m in messages], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def source_files(source: str) -> list[Path]:
    """The transcripts a replay source names: one file, or a run folder's transcripts."""
    path = Path(source)
    files = sorted((path / "transcripts").glob("*.jsonl")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        what = "is neither a transcript file nor a run folder with transcripts"
        raise TranscriptError(f"replay source {source!r} {what}")
    return files


class ReplayAPI(ModelAPI):
    def __init__(self, source: str) -> None:
        from stagbench.records import ModelCallEvent, read_transcript

        files = source_files(source)
        self.replies: dict[str, deque[ModelOutput]] = defaultdict(deque)
        self.sources: dict[str, set[str]] = defaultdict(set)
        for f in files:
            transcript = read_transcript(f)
            for e in transcript.events:
                if isinstance(e, ModelCallEvent) and e.call.raw is not None:
                    key = _key(transcript.full_messages(e))
                    self.sources[key].add(f.name)
                    self.replies[key].append(
                        ModelOutput(
                            text=e.call.raw,
                            input_tokens=e.call.input_tokens,
                            output_tokens=e.call.output_tokens,
                            # what the recorded provider said, not this replay
                            model=e.call.response_model or e.call.model,
                            finish_reason=e.call.finish_reason,
                            system_fingerprint=e.call.system_fingerprint,
                            request_id=e.call.request_id,
                        )
                    )

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        key = _key(messages)
        queue = self.replies.get(key)
        if not queue:
            raise ModelError("replay: this prompt was not recorded (or its replies ran out)")
        if len({o.text for o in queue}) == 1:
            return queue[0]
        if len(self.sources[key]) > 1:
            raise ModelError(
                f"replay: this prompt was recorded with different replies in "
                f"{len(self.sources[key])} transcripts; replay one transcript file instead"
            )
        return queue.popleft()
