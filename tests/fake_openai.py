"""A small OpenAI-compatible (and Anthropic Messages) server on loopback, with programmable faults.

Each request pops the next behaviour from ``script`` (or uses ``default``): a reply text,
an HTTP error with headers, a delay, or a malformed body. Requests are recorded.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    text: str = '{"reasoning": "ok", "action": "stag"}'
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw_body: bytes | None = None
    #: provenance the server reports: why it stopped, which model version, which backend
    finish_reason: str | None = None
    model: str | None = None
    system_fingerprint: str | None = None


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: list[Behaviour] = []
        self.default = Behaviour()
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        #: answer like a server with structured output: only the schema's keys
        self.honour_schema = False
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]})
                self._send(200, body.encode(), {})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append(payload)
                    outer.auth.append(
                        self.headers.get("authorization") or self.headers.get("x-api-key")
                    )
                    outer.paths.append(self.path)
                    b = outer.script.pop(0) if outer.script else outer.default
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                text = _within_schema(payload, b.text) if outer.honour_schema else b.text
                try:
                    if b.delay_s:
                        time.sleep(b.delay_s)
                finally:  # before the reply goes out: the client may send its next at once
                    with outer._lock:
                        outer.in_flight -= 1
                if b.raw_body is not None:
                    self._send(b.status, b.raw_body, b.headers)
                elif b.status != 200:
                    err = {"error": {"message": f"fake error {b.status}", "type": "fake"}}
                    self._send(b.status, json.dumps(err).encode(), b.headers)
                elif self.path.endswith("/messages"):
                    reply = _message(payload, text, b)
                    self._send(200, json.dumps(reply).encode(), b.headers)
                else:
                    reply = _completion(payload, text, b)
                    self._send(200, json.dumps(reply).encode(), b.headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _within_schema(payload: dict[str, Any], text: str) -> str:
    """The reply's JSON cut down to the properties of the schema the request asked for."""
    fmt = payload.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
    if payload.get("tools"):
        schema = payload["tools"][0]["input_schema"]
    if not schema:
        return text
    data = json.loads(text)
    return json.dumps({k: v for k, v in data.items() if k in schema["properties"]})


_ids = itertools.count(1)


def _completion(payload: dict[str, Any], text: str, b: Behaviour) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "id": f"chatcmpl-fake-{next(_ids)}",
        "object": "chat.completion",
        "created": 0,
        "model": b.model or payload.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": b.finish_reason or "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
    if b.system_fingerprint:
        reply["system_fingerprint"] = b.system_fingerprint
    return reply


def _message(payload: dict[str, Any], text: str, b: Behaviour) -> dict[str, Any]:
    tools = payload.get("tools")
    if tools:
        block = {
            "type": "tool_use",
            "id": "tu_1",
            "name": tools[0]["name"],
            "input": json.loads(text),
        }
    else:
        block = {"type": "text", "text": text}
    return {
        "id": f"msg_fake_{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": b.model or payload.get("model", "fake"),
        "content": [block],
        "stop_reason": b.finish_reason or ("tool_use" if tools else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": 200, "output_tokens": 20},
    }


if __name__ == "__main__":  # a standalone server: --port N [--keep-alive]
    import sys

    port = int(sys.argv[sys.argv.index("--port") + 1])
    fake = FakeOpenAI()
    fake.server.server_close()
    handler = fake.server.RequestHandlerClass
    if "--keep-alive" in sys.argv:  # HTTP/1.1 persistent connections, as real servers keep
        handler.protocol_version = "HTTP/1.1"  # type: ignore[attr-defined]
    fake.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    fake.server.serve_forever()
