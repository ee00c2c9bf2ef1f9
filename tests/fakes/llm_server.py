"""A local HTTP server that speaks OpenAI's chat-completions protocol and misbehaves on command.

It is the one fake the tests use, at the edge we cannot reach: real sockets, real HTTP/1.1, real
JSON, so the `openai` SDK under test runs its whole stack. It runs on its own thread and event loop,
so a server under test in another process can reach it whatever the test itself is doing.

Behaviours, taken from the script in order (then `default`):
    ok             a valid single-best-answer item for the requested difficulty
    429[:S]        rate limited, with `Retry-After: S` when given
    500, 503       server errors
    401, 403, 404  wrong key, forbidden, unknown model
    500:T          a server error whose message is T
    timeout[:S]    answer only after S seconds (default 30), or never once `release()` resets the connection
    reset          send half the response headers, then reset the connection
    reset-body     send the headers and half the body of a good answer, then reset the connection
    malformed      200 with content that is not JSON
    schema         200 with JSON that does not match the schema
    duplicate      200 with a well-formed item whose options B and D are identical
    placeholders   200 with a well-formed item whose options are their own labels ("A" to "E")
    refusal[:T]    200 with a refusal (its text T, when given) instead of content
    length         200 with `finish_reason: length`, the item cut off mid-word (the token cap was reached)

`json_schema = False` makes it answer `response_format: json_schema` as llama-cpp-python's server does
(HTTP 500, "Input should be 'text' or 'json_object'"), whatever the script says; `json_object` requests are
answered as usual.

`by_difficulty` maps a requested difficulty to the behaviour of every request for it that the script does not
take (so a test knows which items fail how, whatever order they run in). `fail_randomly(rate, behaviours)`
makes that share of the requests not scripted otherwise fail, each with one of `behaviours` at random
(seeded); `injected` counts what was served, by behaviour. `item` is the item a good answer carries (its
difficulty set from the request); `latency_s` delays every answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from typing import Any

OPTIONS: list[dict[str, str]] = [
    {"label": "A", "text": "Right coronary artery"},
    {"label": "B", "text": "Left anterior descending artery"},
    {"label": "C", "text": "Left circumflex artery"},
    {"label": "D", "text": "Left main coronary artery"},
    {"label": "E", "text": "First diagonal branch"},
]
ITEM: dict[str, Any] = {
    "stem": "A 61-year-old woman has crushing chest pain with ST elevation in II, III and aVF. "
    "Which artery is most likely occluded?",
    "options": OPTIONS,
    "answer": "A",
    "explanation": "The inferior leads face the territory of the right coronary artery.",
    "difficulty": "medium",
}
# What llama-cpp-python's server (0.3) answers to `response_format: json_schema`, with HTTP 500.
REFUSED_JSON_SCHEMA = (
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or "
    "'json_object' [type=literal_error, input_value='json_schema', input_type=str]"
)


class FakeLLM:
    def __init__(self, default: str = "ok") -> None:
        self.default = default
        self.script: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.item: dict[str, Any] = dict(ITEM)
        self.latency_s = 0.0  # before every answer, whatever the behaviour
        self.json_schema = True  # False: refuse `response_format: json_schema` as llama-cpp-python does
        self.injected: Counter[str] = Counter()
        self.by_difficulty: dict[str, str] = {}
        self._chaos: tuple[float, tuple[str, ...]] | None = None
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._holding: set[asyncio.StreamWriter] = set()  # connections whose answer is held (`timeout`)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fake-llm")
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeLLM:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            # Responses still waiting (`timeout`) and connections a client keeps alive would outlive the loop,
            # their sockets never closed: end them now.
            self._stopping.set()
            for writer in list(self._writers):
                writer.transport.abort()
            current = asyncio.current_task()
            handlers = [t for t in asyncio.all_tasks() if t is not current]
            for task in handlers:
                task.cancel()
            if handlers:
                await asyncio.wait(handlers, timeout=5)
            await asyncio.sleep(0)  # let the closed transports release their sockets

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def release(self) -> None:
        """Resets every connection whose answer is held (`timeout`): those attempts fail now instead of
        keeping a server under test waiting for them when it stops."""

        async def reset() -> None:
            for writer in list(self._holding):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(reset(), self._loop).result(10)

    def queue(self, *behaviours: str) -> None:
        with self._lock:
            self.script.extend(behaviours)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def fail_randomly(self, rate: float, behaviours: tuple[str, ...], *, seed: int = 0) -> None:
        with self._lock:
            self._chaos = (rate, behaviours)
            self._rng = random.Random(seed)

    def _next(self, difficulty: str | None = None) -> str:
        with self._lock:
            if self.script:
                behaviour = self.script.popleft()
            elif difficulty in self.by_difficulty:
                behaviour = self.by_difficulty[difficulty]
            elif self._chaos is not None and self._rng.random() < self._chaos[0]:
                behaviour = self._rng.choice(self._chaos[1])
            else:
                behaviour = self.default
            self.injected[behaviour] += 1
            return behaviour

    def _behaviour(self, request: dict[str, Any]) -> str:
        if not self.json_schema and request.get("response_format", {}).get("type") == "json_schema":
            with self._lock:
                self.injected["refuse-json-schema"] += 1
            return f"500:{REFUSED_JSON_SCHEMA}"
        return self._next(_difficulty(request))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = json.loads(body) if body else {}
                with self._lock:
                    self.requests.append({"path": lines[0].split(" ")[1], "headers": headers, "body": request})
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if not await self._respond(self._behaviour(request), request, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the fake is stopping
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _respond(self, behaviour: str, request: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        """Writes one response; False when the connection is gone afterwards."""
        name, _, arg = behaviour.partition(":")
        if name == "reset":
            await self._reset(writer, b"HTTP/1.1 200 OK\r\nContent-Type: application/js")
            return False
        if name == "reset-body":
            payload = json.dumps(self._completion("ok", request)).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            await self._reset(writer, head.encode() + payload[: len(payload) // 2])
            return False
        if name == "timeout":
            self._holding.add(writer)
            try:
                await asyncio.wait_for(self._stopping.wait(), float(arg or 30))
                return False
            except TimeoutError:
                name = "ok"
            finally:
                self._holding.discard(writer)
            if writer.is_closing():  # released meanwhile
                return False
        if name in ("401", "403", "404", "500", "503"):
            status = int(name)
            error = {"error": {"message": arg or f"fake {status}", "type": "fake", "code": None}}
            self._write(writer, status, error)
        elif name == "429":
            extra = {"retry-after": arg} if arg else {}
            self._write(writer, 429, {"error": {"message": "slow down", "type": "rate_limit"}}, extra)
        else:
            self._write(writer, 200, self._completion(behaviour, request))
        await writer.drain()
        return True

    @staticmethod
    async def _reset(writer: asyncio.StreamWriter, sent: bytes) -> None:
        """Sends `sent`, then resets the connection (RST, not a clean close)."""
        writer.write(sent)
        await writer.drain()
        sock: socket.socket = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    def _completion(self, behaviour: str, request: dict[str, Any]) -> dict[str, Any]:
        name, _, arg = behaviour.partition(":")
        item = dict(self.item, difficulty=_difficulty(request) or "medium")
        refusal, finish_reason = None, "stop"
        if name == "malformed":
            content: str | None = "Sure! Here is your question: {stem: oops"
        elif name == "schema":
            content = json.dumps({"question": "missing every required field"})
        elif name == "duplicate":
            options = [dict(o) for o in OPTIONS]
            options[3]["text"] = options[1]["text"]
            content = json.dumps(dict(item, options=options))
        elif name == "placeholders":
            content = json.dumps(dict(item, options=[{"label": o["label"], "text": o["label"]} for o in OPTIONS]))
        elif name == "refusal":
            content, refusal = None, arg or "I can't help with that."
        elif name == "length":
            whole = json.dumps(item)
            content, finish_reason = whole[: len(whole) * 2 // 3], "length"
        else:
            content = json.dumps(item)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    @staticmethod
    def _write(
        writer: asyncio.StreamWriter, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        reason = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}.get(
            status, "Error"
        )
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(payload)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)


def _difficulty(request: dict[str, Any]) -> str | None:
    """The difficulty the request asks for (the prompt says `Difficulty: hard`)."""
    prompt = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
    match = re.search(r"Difficulty: (\w+)", prompt)
    return match.group(1) if match else None
