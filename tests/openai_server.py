"""A loopback server that speaks the OpenAI chat completions wire protocol, for tests of the real client.

    with OpenAIServer([reply('{"stance": "supports", ...}'), rate_limited(), ...]) as server:
        client = LLMClient(server.base_url, None, "test-model")

It answers POST /v1/chat/completions from a scripted queue of `Reply`s, or from a responder
function of the request body, and records every request (`server.requests`) so tests can check
what the client sent. `rejects_json_schema=True` plays a server without structured outputs: any
request asking for a `json_schema` response format gets HTTP 400 without consuming the script.
The server serves at most `max_requests` requests and shuts itself down after `lifetime` seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One scripted answer: the assistant's content, or an HTTP error."""

    content: str | None = None
    status: int = 200
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def reply(content: str | dict) -> Reply:
    return Reply(content=content if isinstance(content, str) else json.dumps(content))


def rate_limited(retry_after: float = 0.05) -> Reply:
    return Reply(status=429, error="Rate limit reached, slow down", headers={"Retry-After": str(retry_after)})


def server_error() -> Reply:
    return Reply(status=500, error="The server had an error while processing your request")


def unauthorized() -> Reply:
    return Reply(status=401, error="Incorrect API key provided")


Responder = Callable[[dict], Reply]


class OpenAIServer:
    def __init__(
        self,
        script: list[Reply] | Responder,
        *,
        rejects_json_schema: bool = False,
        max_requests: int = 20,
        lifetime: float = 30.0,
    ):
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self._answer = script if callable(script) else _queue(list(script))
        self._rejects_json_schema = rejects_json_schema
        self._max_requests = max_requests
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAIServer:
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._deadline = threading.Timer(self._lifetime, self._httpd.shutdown)
        self._deadline.daemon = True
        self._deadline.start()
        return self

    def __exit__(self, *exc) -> None:
        self._deadline.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _respond(self, body: dict, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            if len(self.requests) > self._max_requests:
                return Reply(status=410, error=f"test server: more than {self._max_requests} requests")
            if self._rejects_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                return Reply(status=400, error="response_format json_schema is not supported by this server")
            return self._answer(body)


def _queue(replies: list[Reply]) -> Responder:
    def next_reply(body: dict) -> Reply:
        # 410 is not retried by the client, so a test that asks more than it scripted fails at once.
        return replies.pop(0) if replies else Reply(status=410, error="test server: no scripted reply left")

    return next_reply


def completion(body: dict, content: str) -> dict:
    """A chat.completion object as the API returns it."""
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion_tokens = len(content.split())
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            answer = server._respond(body, {k.lower(): v for k, v in self.headers.items()})
            if answer.status == 200:
                self._send(200, completion(body, answer.content or ""))
            else:
                error = {"message": answer.error, "type": "invalid_request_error", "param": None, "code": None}
                self._send(answer.status, {"error": error}, answer.headers)

        def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up: there is no one left to answer

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    return Handler
