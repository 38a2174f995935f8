"""A loopback server that speaks the OpenAI chat completions wire protocol, for tests of the real client.

    with OpenAIServer([reply('{"stance": "supports", ...}'), rate_limited(), ...]) as server:
        client = LLMClient(server.base_url, None, "test-model")

It answers POST /v1/chat/completions from a scripted queue of `Reply`s, or from a responder
function of the request body, and records every request (`server.requests`) so tests can check
what the client sent; GET /v1/models (the client's probe) lists one model and is not recorded.
Faults a reply can play: HTTP errors (`rate_limited`, `server_error`, `unauthorized`), output cut
off at the length limit (`truncated`), null content (`empty`), a `<think>` block before the answer
(`thinking`) and a connection closed without an answer (`dropped`).
Faults a server can play, without consuming the script: `rejects_json_schema=True` answers HTTP 400
to a `json_schema` response format (a server with JSON mode only); with `rejects_json_object=True`
too it has no structured output at all; `api_key="..."` answers 401 to any other key.
`latency=` seconds each completion takes (outside the server's lock, so requests overlap);
`max_in_flight` is the most completion requests the server held at once.
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
    """One scripted answer: the assistant's content, an HTTP error, or (`drop`) no answer at all."""

    content: str | None = None
    status: int = 200
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    drop: bool = False


def reply(content: str | dict) -> Reply:
    return Reply(content=content if isinstance(content, str) else json.dumps(content))


def rate_limited(retry_after: float = 0.05) -> Reply:
    return Reply(status=429, error="Rate limit reached, slow down", headers={"Retry-After": str(retry_after)})


def server_error() -> Reply:
    return Reply(status=500, error="The server had an error while processing your request")


def unauthorized() -> Reply:
    return Reply(status=401, error="Incorrect API key provided")


def truncated(content: str | dict) -> Reply:
    """The output cut off at the token limit: the first half of the content, finish_reason "length"."""
    text = reply(content).content
    return Reply(content=text[: len(text) // 2], finish_reason="length")


def empty() -> Reply:
    """A 200 whose message content is null, as servers send when the model produced nothing."""
    return Reply(content=None)


def thinking(content: str | dict, thoughts: str = "The paper says {so}; it supports it.") -> Reply:
    """A reasoning model's reply: its thinking (braces included) in a <think> block before the answer."""
    return Reply(content=f"<think>\n{thoughts}\n</think>\n\n{reply(content).content}")


def dropped() -> Reply:
    """The connection closed without an answer, as when a server or proxy dies mid-request."""
    return Reply(drop=True)


Responder = Callable[[dict], Reply]


class OpenAIServer:
    def __init__(
        self,
        script: list[Reply] | Responder,
        *,
        rejects_json_schema: bool = False,
        rejects_json_object: bool = False,
        api_key: str | None = None,
        max_requests: int = 20,
        lifetime: float = 30.0,
        latency: float = 0.0,
    ):
        self.requests: list[dict] = []
        self.latency = latency
        self.in_flight = self.max_in_flight = 0
        self.headers: list[dict[str, str]] = []
        self._answer = script if callable(script) else _queue(list(script))
        self._rejected_formats = {kind for kind, rejected in (("json_schema", rejects_json_schema),
                                                               ("json_object", rejects_json_object)) if rejected}
        self._api_key = api_key
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
            if not self.accepts_key(headers):
                return unauthorized()
            kind = (body.get("response_format") or {}).get("type")
            if kind in self._rejected_formats:
                return Reply(status=400, error=f"response_format {kind} is not supported by this server")
            return self._answer(body)

    def _arrived(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _left(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def accepts_key(self, headers: dict[str, str]) -> bool:
        return self._api_key is None or headers.get("authorization") == f"Bearer {self._api_key}"


def _queue(replies: list[Reply]) -> Responder:
    def next_reply(body: dict) -> Reply:
        # 410 is not retried by the client, so a test that asks more than it scripted fails at once.
        return replies.pop(0) if replies else Reply(status=410, error="test server: no scripted reply left")

    return next_reply


def completion(body: dict, content: str | None, finish_reason: str = "stop") -> dict:
    """A chat.completion object as the API returns it."""
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion_tokens = len((content or "").split())
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
                "finish_reason": finish_reason,
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
        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                return
            if server.accepts_key({k.lower(): v for k, v in self.headers.items()}):
                self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model", "created": 0,
                                                             "owned_by": "test"}]})
            else:
                self._send_error(unauthorized())

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            server._arrived()
            try:
                time.sleep(server.latency)
                answer = server._respond(body, {k.lower(): v for k, v in self.headers.items()})
            finally:
                server._left()
            if answer.drop:
                self.close_connection = True  # hang up without a status line: the client sees a dropped connection
            elif answer.status == 200:
                self._send(200, completion(body, answer.content, answer.finish_reason))
            else:
                self._send_error(answer)

        def _send_error(self, answer: Reply) -> None:
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
