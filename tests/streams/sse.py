"""A small Server-Sent Events reader for the tests (blocking, over ``requests``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Message:
    event: str | None = None
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def parse(lines: Iterator[str]) -> Iterator[Message]:
    """Messages of an event stream, one per blank-line-terminated block."""
    message = Message()
    data: list[str] = []
    for line in lines:
        if line == "":
            message.data = "\n".join(data)
            yield message
            message, data = Message(), []
        elif line.startswith(":"):
            message.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                message.event = value
            elif name == "id":
                message.id = value
            elif name == "retry":
                message.retry = int(value)


def _lines(response: requests.Response) -> Iterator[str]:
    buffer = ""
    for chunk in response.iter_content(chunk_size=None, decode_unicode=False):
        buffer += chunk.decode("utf-8")
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield line.rstrip("\r")


class Stream:
    """An open stream: ``next_message()`` blocks for the next message (read timeout: fails)."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, timeout: float = 20.0
    ) -> None:
        self.response = requests.get(
            url,
            headers={"Accept": "text/event-stream", **(headers or {})},
            stream=True,
            timeout=(5, timeout),
        )
        self.status_code = self.response.status_code
        self._messages = parse(_lines(self.response)) if self.status_code == 200 else iter(())

    def next_message(self) -> Message:
        return next(self._messages)

    def messages(self) -> Iterator[Message]:
        return self._messages

    def events_until_end(self) -> tuple[list[Message], Message | None]:
        """Every ``event`` message up to ``end`` (or the server closing), and the ``end``."""
        events = []
        for message in self._messages:
            if message.event == "end":
                return events, message
            if message.event == "event":
                events.append(message)
        return events, None

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
