"""Servers on 127.0.0.1 that misbehave the way real ones do, for the download bounds (issue 13).

- ScriptedServer answers its Nth HTTP request as told: a status, a body, a body
  trickled byte by byte (never stalling, never done), a body cut off midway, or
  silence after accepting the connection (the server that hangs).
- unreachable_port() gives a port whose listen queue is full: the kernel drops
  new connection attempts, so connecting hangs until the client's own timeout.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """How to answer one request: `status` with `body`; `trickle` seconds between its bytes;
    `cut` after that many bytes of it, silence (a transfer cut off); or `silent` (read the request,
    then say nothing until the server closes)."""

    status: int = 200
    body: bytes = b""
    trickle: float = 0.0
    cut: int | None = None
    silent: bool = False


class ScriptedServer:
    """Answers requests in order from `answers`; the last answer repeats. Records request paths."""

    def __init__(self, answers: list[Answer]):
        self.answers = answers
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request = self.rfile.readline().decode(errors="replace").split()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                with server.lock:
                    answer = server.answers[min(len(server.requests), len(server.answers) - 1)]
                    server.requests.append(request[1] if len(request) > 1 else "")
                if answer.silent:
                    server.closing.wait(120)
                    return
                reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(answer.status, "Status")
                self.wfile.write(f"HTTP/1.1 {answer.status} {reason}\r\nContent-Length: {len(answer.body)}\r\n"
                                 "Connection: close\r\n\r\n".encode())
                self.wfile.flush()
                if answer.cut is not None:
                    self.wfile.write(answer.body[:answer.cut])
                    self.wfile.flush()
                    server.closing.wait(120)
                elif answer.trickle:
                    for index in range(len(answer.body)):
                        if server.closing.wait(answer.trickle):
                            return
                        self.wfile.write(answer.body[index:index + 1])
                        self.wfile.flush()
                else:
                    self.wfile.write(answer.body)

        socketserver.ThreadingTCPServer.daemon_threads = True
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.tcp.server_address[1]}"
        threading.Thread(target=self.tcp.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.tcp.shutdown()
        self.tcp.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UnreachablePort:
    """A port on 127.0.0.1 that accepts no more connections: its listen queue is full and the kernel
    drops new attempts, so a client's connect hangs until its own timeout."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        # The queue takes one or two connections depending on the kernel; fill it until one hangs.
        for _ in range(4):
            filler = socket.socket()
            filler.settimeout(0.5)
            try:
                filler.connect(("127.0.0.1", self.port))
            except OSError:
                filler.close()
                break
            self.fillers.append(filler)
        time.sleep(0.1)

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.listener.close()

    def __enter__(self) -> UnreachablePort:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
