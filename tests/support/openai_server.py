"""A loopback OpenAI-compatible server for tests: the real SDK talks real HTTP to it, and it answers from a queue.

Usage (in a test module or a ``conftest.py``, import the fixture so pytest finds it)::

    from tests.support.openai_server import OpenAIServer, Reply, openai_server  # noqa: F401

    async def test_something(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in openai_server.env.items():  # OPENAI_BASE_URL + OPENAI_API_KEY pointing here
            monkeypatch.setenv(key, value)
        openai_server.queue(
            Reply.tool_calls(("read_file", '{"path": "a.py"}')),
            Reply.error(429),                     # agentflow retries this one ...
            Reply.text("done"),                   # ... and gets this
        )
        ...
        assert openai_server.requests[0]["tools"]  # every request body received, parsed, in order

Replies are served in order, one per ``POST /v1/chat/completions``. When the queue is empty the server answers
500 with ``x-should-retry: false`` and a message saying no reply was queued, so a test that calls the model more
often than it planned fails with that message instead of hanging; ``server.always(reply)`` answers ``reply`` instead
(an outage that never ends). Error replies carry ``retry-after-ms: 1`` by default, which agentflow's retries honour,
so retry tests do not sleep through the exponential backoff; ``Reply.error(429, retry_after_s=None,
headers={"retry-after": "1"})`` scripts any other header. ``request_times`` holds when each request arrived.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer of the server; build it with the class methods."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {})
    delay_s: float = 0.0  # sleep before answering, to make the client time out

    @classmethod
    def completion(cls, payload: dict[str, Any], *, delay_s: float = 0.0) -> Reply:
        """A 200 with an arbitrary JSON body (e.g. a completion with no choices)."""
        return cls(200, json.dumps(payload).encode(), {"content-type": "application/json"}, delay_s)

    @classmethod
    def message(
        cls,
        message: dict[str, Any],
        *,
        finish_reason: str = "stop",
        model: str = "test-model",
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        delay_s: float = 0.0,
    ) -> Reply:
        """A chat completion whose single choice holds ``message`` (an assistant message dict, sent as is)."""
        return cls.completion(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            delay_s=delay_s,
        )

    @classmethod
    def text(cls, content: str, **options: Any) -> Reply:
        """An assistant text answer; ``options`` as for ``message`` (model, token counts, delay)."""
        return cls.message({"role": "assistant", "content": content}, **options)

    @classmethod
    def tool_calls(cls, *calls: tuple[str, str], content: str | None = None, **options: Any) -> Reply:
        """An assistant turn calling tools; each call is ``(name, arguments_text)``, the text sent verbatim.

        Call ids are ``call_1``, ``call_2``, ... in the order given.
        """
        tool_calls = [
            {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
            for i, (name, arguments) in enumerate(calls, start=1)
        ]
        message = {"role": "assistant", "content": content, "tool_calls": tool_calls}
        return cls.message(message, finish_reason="tool_calls", **options)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        error_type: str = "server_error",
        code: str | None = None,
        retry_after_s: float | None = 0.001,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

        Args:
            status: The HTTP status (429, 500, 400 ...).
            message: The error message; a default names the status.
            error_type: The ``type`` field (OpenAI uses e.g. ``invalid_request_error``, ``rate_limit_exceeded``).
            code: The ``code`` field.
            retry_after_s: Sent as ``retry-after-ms``; agentflow waits that long before retrying. ``None`` sends no
                header, so the exponential backoff applies (1 s and more: avoid in tests).
            headers: More response headers (e.g. ``{"x-should-retry": "false"}``).
        """
        text = message or f"test error {status}"
        body = {"error": {"message": text, "type": error_type, "param": None, "code": code}}
        all_headers = {"content-type": "application/json"}
        if retry_after_s is not None:
            all_headers["retry-after-ms"] = str(max(1, round(retry_after_s * 1000)))
        all_headers.update(headers or {})
        return cls(status, json.dumps(body).encode(), all_headers)

    @classmethod
    def raw(cls, status: int, body: str | bytes, headers: dict[str, str] | None = None) -> Reply:
        """Any status and body, e.g. a non-JSON answer from a misbehaving proxy."""
        data = body.encode() if isinstance(body, str) else body
        return cls(status, data, headers or {"content-type": "text/plain"})


class OpenAIServer:
    """The server; start it with ``with OpenAIServer() as server:`` or use the ``openai_server`` fixture.

    Attributes:
        requests: The parsed JSON body of every chat-completions request received, in arrival order.
        request_headers: The headers of those requests (lower-cased names), in the same order.
        request_times: ``time.monotonic()`` when each of them arrived, in the same order.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.request_times: list[float] = []
        self._replies: deque[Reply] = deque()
        self._always: Reply | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        # A short poll interval keeps `stop()` (which waits for the serving loop to notice) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="openai-test-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        """The URL to give the SDK (``OPENAI_BASE_URL``), ending in ``/v1``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point the ``openai:`` provider at this server."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "test-key"}

    def queue(self, *replies: Reply) -> None:
        """Append replies; each chat-completions request takes the oldest one."""
        with self._lock:
            self._replies.extend(replies)

    def always(self, reply: Reply) -> None:
        """Answer ``reply`` to every request once the queue is empty (instead of the "no reply queued" error)."""
        with self._lock:
            self._always = reply

    @property
    def pending(self) -> int:
        """How many queued replies have not been served."""
        with self._lock:
            return len(self._replies)

    def _take(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)
            self.request_times.append(time.monotonic())
            if self._replies:
                return self._replies.popleft()
            if self._always is not None:
                return self._always
            number = len(self.requests)
        return Reply.error(
            500,
            f"openai_server: no reply queued for request #{number}",
            retry_after_s=None,
            headers={"x-should-retry": "false"},
        )

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            data = self.rfile.read(length)
            if self.path != CHAT_COMPLETIONS_PATH:
                self._send(Reply.error(404, f"openai_server: no route {self.path}", retry_after_s=None))
                return
            try:
                body = json.loads(data)
            except ValueError:
                body = {"_unparsed": data.decode(errors="replace")}
            reply = server._take(body, {name.lower(): value for name, value in self.headers.items()})
            if reply.delay_s:
                time.sleep(reply.delay_s)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A running ``OpenAIServer``, stopped after the test."""
    with OpenAIServer() as server:
        yield server
