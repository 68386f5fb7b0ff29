"""vLLM: a running ``vllm serve`` (OpenAI-compatible), one that stagbench starts and stops
itself on a local GPU, or the in-process ``vllm.LLM`` engine with cross-trial batching."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.agents.models.batching import Batcher
from stagbench.agents.models.providers.openai_api import OpenAICompatAPI
from stagbench.errors import MissingExtraError, ModelError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagedServerAPI(ModelAPI):
    """Starts an OpenAI-compatible server (``vllm serve`` by default) on first use, waits for
    it to answer, sends requests to it, and stops it on close.

    Options: ``port`` (default: a free one), ``max_model_len`` (4096),
    ``gpu_memory_utilization``, ``extra_args`` (list), ``startup_timeout_s`` (600),
    ``command`` (a list with ``{model}`` and ``{port}`` placeholders, to start another
    server such as llama.cpp's instead).
    """

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        self.model = model
        self.options = options
        self.port = int(options.get("port") or free_port())
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: OpenAICompatAPI | None = None
        self._start_lock = asyncio.Lock()
        self.log_path = options.get("log_path")

    def command(self) -> list[str]:
        template = self.options.get("command")
        if template:
            return [str(part).format(model=self.model, port=self.port) for part in template]
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise MissingExtraError("vllm", "vllm", f"starting a vLLM server for {self.model}")
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--served-model-name", self.model,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--max-model-len", str(self.options.get("max_model_len", 4096)),
            "--enable-prefix-caching",
        ]  # fmt: skip
        if "gpu_memory_utilization" in self.options:
            cmd += ["--gpu-memory-utilization", str(self.options["gpu_memory_utilization"])]
        return cmd + [str(a) for a in self.options.get("extra_args", [])]

    async def start(self) -> None:
        async with self._start_lock:
            if self.client is not None:
                return
            log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = time.monotonic() + float(self.options.get("startup_timeout_s", 600))
            async with httpx.AsyncClient() as http:
                while True:
                    if self.proc.poll() is not None:
                        raise ModelError(
                            f"the server for {self.model} exited with code "
                            f"{self.proc.returncode} while starting"
                            + (f"; see {self.log_path}" if self.log_path else "")
                        )
                    try:
                        r = await http.get(f"{self.base_url}/models", timeout=2.0)
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        await self.aclose()
                        raise ModelError(f"the server for {self.model} did not come up in time")
                    await asyncio.sleep(0.25)
            self.client = OpenAICompatAPI(
                self.model,
                base_url=self.base_url,
                api_key=None,
                structured=str(self.options.get("structured", "json_schema")),
                client=str(self.options.get("client", "http")),
            )

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        if self.client is None:
            await self.start()
        assert self.client is not None
        return await self.client.generate(messages, config, schema)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class VLLMOfflineAPI(ModelAPI):
    """The in-process ``vllm.LLM`` engine. Every prompt pending at once (all agents of all
    trials in flight) goes into one ``LLM.chat`` call, constrained by the JSON schema."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise MissingExtraError("vllm", "vllm", f"vllm-offline/{model}") from exc
        self.vllm = vllm
        self.model = model
        engine_args = {"max_model_len": 4096, "enable_prefix_caching": True}
        engine_args.update(options.get("engine_args", {}))
        self.llm = vllm.LLM(model=model, **engine_args)
        self.batcher: Batcher[
            tuple[list[ChatMessage], GenerateConfig, OutputSchema | None], ModelOutput
        ] = Batcher(self._run_batch, max_batch=int(options.get("max_batch", 512)))

    def _params(self, config: GenerateConfig, schema: OutputSchema | None) -> Any:
        kwargs: dict[str, Any] = {"max_tokens": config.max_tokens, **config.sampling()}
        if schema is not None:
            sp = self.vllm.sampling_params
            if hasattr(sp, "StructuredOutputsParams"):  # vLLM >= 0.11
                kwargs["structured_outputs"] = sp.StructuredOutputsParams(json=schema.json_schema)
            else:
                kwargs["guided_decoding"] = sp.GuidedDecodingParams(json=schema.json_schema)
        return self.vllm.SamplingParams(**kwargs)

    def _run_batch(
        self, batch: list[tuple[list[ChatMessage], GenerateConfig, OutputSchema | None]]
    ) -> list[ModelOutput]:
        convs = [[m.model_dump() for m in msgs] for msgs, _, _ in batch]
        params = [self._params(cfg, schema) for _, cfg, schema in batch]
        outs = self.llm.chat(convs, sampling_params=params, use_tqdm=False)
        return [
            ModelOutput(
                text=o.outputs[0].text,
                input_tokens=len(o.prompt_token_ids or []),
                output_tokens=len(o.outputs[0].token_ids),
                model=f"vllm-offline/{self.model}",
                finish_reason=o.outputs[0].finish_reason,
                request_id=str(getattr(o, "request_id", "") or "") or None,
            )
            for o in outs
        ]

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        return await self.batcher.submit((messages, config, schema))
