"""Serve an offline source directory (`envbuild fetch`) over HTTP, for `envbuild image --sources`.

Standard library only, Python 3.8+: `envbuild image` runs it with the base
image's python3 in a container that has no network but its own loopback, with
the directory mounted read-only; the build's steps share that loopback (and
nothing else), so ENVBUILD_SOURCE_DIR=http://127.0.0.1:PORT is all they reach.

    python3 serve_sources.py DIR PORT

Files are served as they are (pip/, downloads/, meson/, apt/, git/urls); the
git mirrors under git/ speak git's smart HTTP protocol through
`git http-backend`, so shallow fetches by commit work as they do from the
directory itself.
"""

import http.server
import os
import subprocess
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    root = "."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=self.root, **kwargs)

    def do_GET(self):
        if self.path.startswith("/git/") and ".git/" in self.path:
            self.git()
        else:
            super().do_GET()

    def do_POST(self):
        if self.path.startswith("/git/") and ".git/" in self.path:
            self.git()
        else:
            self.send_error(405)

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def git(self):
        path, _, query = self.path.partition("?")
        body = self.body()
        env = dict(os.environ, GIT_PROJECT_ROOT=self.root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_ADDR="127.0.0.1",
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                   HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
                   GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                   # The mirrors belong to whoever ran envbuild fetch.
                   GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
        output = subprocess.run(["git", "http-backend"], input=body, env=env, stdout=subprocess.PIPE).stdout
        head, _, payload = output.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main():
    Handler.root = os.path.abspath(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
