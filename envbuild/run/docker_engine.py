"""The one module that talks to the Docker engine (through docker-py).

Engine failures become one-line EnvbuildErrors here, so no docker-py or
requests traceback ever reaches the user. Builds use the classic builder's
JSON event stream; BuildTranscript folds that stream into steps, and
BuildProgress renders it as live progress per recipe component. settle_image
gives a built image its reproducible config; push and PushProgress send it to
a registry.

Contract with the Dockerfile renderer: a component's layer is a RUN whose
instruction starts with `RUN ENVBUILD_COMPONENT=<name>`, so the builder's
`Step N/M : RUN ENVBUILD_COMPONENT=<name> ...` line names the component (or,
as `<component>@<family>`, its build for one NIC family).
(The `# envbuild component: <name>` comment above it is for readers of the
Dockerfile: the builder strips comments, so they never reach the stream.)
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Generator, Iterator, Mapping, Sequence, TextIO

import docker
import docker.errors
import docker.utils
import requests

from envbuild.errors import EnvbuildError
from envbuild.net import last_line

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
FAILURE_TAIL_LINES = 30
# Any fixed value works; 0 keeps tar listings obviously synthetic.
CONTEXT_MTIME = 0

EventHandler = Callable[[dict], None]


class EngineUnreachable(EnvbuildError):
    """The Docker engine cannot be reached or refuses us the socket."""


class BuildFailed(EnvbuildError):
    """A build step failed; carries the failing step and its last output lines."""

    def __init__(self, error: str, step: BuildStep | None = None):
        self.error = error.strip()
        self.step = step
        self.component = step.component if step else None
        self.output_tail = list(step.output) if step else []
        super().__init__(self._summary())

    def _summary(self) -> str:
        error = concise_error(self.error)
        if self.step is None:
            return f"image build failed: {error}"
        if self.component:
            where = f"component {self.component!r} (step {self.step.number}/{self.step.total})"
        else:
            where = self.step.describe()
        return f"image build failed in {where}: {error}"


# The runtime engine's failure report (engine/main.sh, _eb_report_failure): `envbuild: error:
# NAME failed (exit N) after ...; log: FILE`, then the log's last lines as `  | line`.
_ENGINE_REPORT = re.compile(r"^envbuild: error: \S+ failed \(exit \d+\) ")


def failure_tail(output: Sequence[str]) -> list[str]:
    """What to show of a failed step's last output lines: from the engine's failure report on when
    they hold one (it ends with the step log's last lines, which the output before it repeats),
    else all of them."""
    lines = list(output)
    reports = [index for index, line in enumerate(lines) if _ENGINE_REPORT.match(line)]
    return lines[reports[-1]:] if reports else lines


def concise_error(error: str) -> str:
    """The builder's error without the echo of the whole RUN command."""
    nonzero = _NONZERO_EXIT.match(error.strip())
    return f"the command exited with code {nonzero.group(1)}" if nonzero else error.strip()


# --- connecting ---------------------------------------------------------------


def connect() -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket)."""
    try:
        # from_env negotiates the API version, so a dead engine fails right here.
        return docker.from_env()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineUnreachable(unreachable_message(os.environ.get("DOCKER_HOST", ""), exc)) from None


def unreachable_message(docker_host: str, exc: BaseException) -> str:
    """One line: which engine address was tried, why it failed, what to do."""
    host = docker_host or DEFAULT_DOCKER_HOST
    tried = f"DOCKER_HOST={docker_host}" if docker_host else f"the default socket {DEFAULT_DOCKER_HOST}"
    cause = _root_os_error(exc)
    reason = cause.strerror if cause is not None and cause.strerror else _first_line(exc)
    if host.startswith("unix://"):
        socket_path = host[len("unix://"):]
        if cause is not None and cause.errno in (errno.EACCES, errno.EPERM):
            return (
                f"permission denied on the Docker socket {socket_path} (tried {tried}): "
                "add your user to the 'docker' group (sudo usermod -aG docker $USER, then log in again) "
                "or run envbuild with sudo"
            )
        return (
            f"no Docker engine answers on {tried} ({reason}): start dockerd "
            "(sudo systemctl start docker, or sudo dockerd &) or point DOCKER_HOST at a running engine"
        )
    return (
        f"cannot reach the Docker engine at {tried} ({reason}): "
        "check that the engine runs and listens there, or unset DOCKER_HOST to use the local socket"
    )


def _root_os_error(exc: BaseException) -> OSError | None:
    """The OSError at the bottom of docker-py/requests/urllib3 wrapping, if any.

    Those libraries nest the cause both in __cause__/__context__ and in args.
    """
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        pending.extend(current.args)
        pending.extend([current.__cause__, current.__context__])
    return None


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    try:
        yield
    except docker.errors.APIError as exc:
        raise EnvbuildError(f"the Docker engine could not {action}: {_first_line(exc)}") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineUnreachable(
            f"lost the Docker engine while trying to {action}: "
            f"{unreachable_message(os.environ.get('DOCKER_HOST', ''), exc)}"
        ) from None


# --- images -------------------------------------------------------------------


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    return image_labels(client, tag) is not None


def image_labels(client: docker.DockerClient, tag: str) -> dict[str, str] | None:
    """The labels of image `tag`, or None when there is no such image."""
    with _engine_errors(f"inspect image {tag}"):
        try:
            config = client.api.inspect_image(tag).get("Config") or {}
        except docker.errors.NotFound:
            return None
    return config.get("Labels") or {}


def tag_image(client: docker.DockerClient, image: str, tags: Sequence[str]) -> str:
    """Gives image `image` every tag in `tags`; returns its id (sha256:...)."""
    with _engine_errors(f"tag image {image}"):
        image_id = client.api.inspect_image(image)["Id"]
        for tag in tags:
            repository, name = docker.utils.parse_repository_tag(tag)
            client.api.tag(image_id, repository, name or "latest")
    return image_id


def base_image_present(client: docker.DockerClient, ref: str) -> bool:
    """Whether `FROM ref` can build without pulling."""
    # scratch is the builder's empty image, never stored in the engine.
    return ref == "scratch" or image_exists(client, ref)


def image_digest(client: docker.DockerClient, ref: str) -> tuple[str | None, str]:
    """The registry digest (sha256:...) of image `ref`, and where it came from or why there is none.

    Asks the registry through the engine first (what the tag is now), then the
    local engine's RepoDigests (what the local copy was pulled as). Never raises:
    an unreachable registry or engine gives (None, reason).
    """
    if "@sha256:" in ref:
        return ref.rsplit("@", 1)[1], "the reference is a digest"
    try:
        descriptor = client.api.inspect_distribution(ref)["Descriptor"]
        return descriptor["digest"], f"from the registry of {ref}"
    except docker.errors.APIError as exc:
        registry_error = _first_line(exc.explanation or exc)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        registry_error = _first_line(exc)
    except (KeyError, TypeError):
        registry_error = "the engine's answer has no digest"
    repository = _repository(ref)
    try:
        repo_digests = client.api.inspect_image(ref).get("RepoDigests") or []
    except docker.errors.NotFound:
        return None, f"no registry answers for {ref} ({registry_error}) and the local engine does not have it"
    except (docker.errors.DockerException, requests.RequestException) as exc:
        return None, f"no registry answers for {ref} ({registry_error}); the local engine: {_first_line(exc)}"
    for entry in sorted(repo_digests):
        name, _, digest = entry.partition("@")
        if _repository(name) == repository and digest:
            return digest, f"RepoDigests of the local image {ref} (no registry answers: {registry_error})"
    return None, (f"no registry answers for {ref} ({registry_error}) and the local image has no registry digest "
                  "(built or loaded locally, never pulled or pushed)")


def _repository(ref: str) -> str:
    """The repository of an image reference, without tag or digest, with Docker Hub's implicit prefixes."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    parts = name.split("/")
    if len(parts) == 1 or not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        name = "docker.io/" + (name if len(parts) > 1 else f"library/{name}")
    return name


_EMPTY_HISTORY = re.compile(r"#\(nop\) +(?!(COPY|ADD) )")
# The classic builder writes a RUN's build arguments before its command: "|2 A=1 B=2 /bin/sh -c ...".
_BUILD_ARGS = re.compile(r"^\|\d+ .*?(?=/bin/sh -c )", re.DOTALL)


def settle_image(client: docker.DockerClient, image_id: str, base: str, tags: list[str], epoch: int) -> str:
    """Gives image `image_id` its reproducible config and `tags`; returns the new image id (sha256:...).

    The classic builder writes the time of the build into the image config (its
    `created`, and each history entry's), so equal layers still make a new image
    ID. Here the config is written again with `epoch` for those times, without
    the builder's parent link and without the build arguments (build settings,
    which the builder writes into the history of each RUN), and loaded as an image whose layers the engine has
    already: a tar of the config and a manifest, no layer moved. The base image's
    history (of image `base`) keeps its own times. Raises EnvbuildError when the
    engine refuses.
    """
    with _engine_errors(f"inspect the built image {image_id[:19]}"):
        built = client.api.inspect_image(image_id)
        history = list(reversed(client.api.history(image_id)))
        inherited = 0 if base == "scratch" else len(client.api.history(base))
    diff_ids = built["RootFS"]["Layers"]

    def utc(seconds: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

    entries = [
        {"created": utc(entry["Created"] if index < inherited else epoch),
         "created_by": entry["CreatedBy"] if index < inherited else _BUILD_ARGS.sub("", entry["CreatedBy"]),
         **({"comment": entry["Comment"]} if entry["Comment"] else {})}
        for index, entry in enumerate(history)
    ]
    _mark_empty_layers(entries, history, len(diff_ids))
    config = {
        "architecture": built["Architecture"],
        "os": built["Os"],
        "config": {**built["Config"], "Image": ""},
        "created": utc(epoch),
        "history": entries,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if built.get("Variant"):
        config["variant"] = built["Variant"]
    raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(raw).hexdigest()
    manifest = [{"Config": f"{digest}.json", "RepoTags": tags, "Layers": [f"{i}/layer.tar" for i in range(len(diff_ids))]}]
    archive = make_context_tar({f"{digest}.json": (raw, 0o644), "manifest.json": (json.dumps(manifest).encode(), 0o644)})
    with _engine_errors("store the reproducible image config"):
        for event in client.api.load_image(archive):
            if "error" in event:
                raise EnvbuildError(f"the Docker engine could not store the reproducible image config: {event['error']}")
    return f"sha256:{digest}"


def _mark_empty_layers(entries: list[dict], history: list[dict], layers: int) -> None:
    """Sets `empty_layer` on the history entries that made no layer, as the original config had it.

    The engine's history API leaves that flag out: builder instructions that only
    change the config are `#(nop)` other than COPY/ADD; failing that, the entries
    of no size. Raises EnvbuildError when neither accounts for the image's layers.
    """
    for empty in ([bool(_EMPTY_HISTORY.search(h["CreatedBy"])) for h in history],
                  [h["Size"] == 0 for h in history]):
        if empty.count(False) == layers:
            for entry, flag in zip(entries, empty):
                if flag:
                    entry["empty_layer"] = True
            return
    raise EnvbuildError(f"cannot tell which of the image's {len(history)} history entries made its {layers} layers; "
                        "its config cannot be written again")


def layer_sizes(client: docker.DockerClient, image: str, base: str) -> dict[str, int]:
    """The bytes of each layer image `image` has over image `base`, by the id of the builder's image (sha256:...)."""
    with _engine_errors(f"read the history of {image}"):
        history = client.api.history(image)
        inherited = 0 if base == "scratch" else len(client.api.history(base))
    own = history[: len(history) - inherited]  # newest first
    return {entry["Id"].split(":")[-1]: entry["Size"] for entry in own if entry["Id"] != "<missing>"}


# --- pushing ------------------------------------------------------------------


def human_bytes(count: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as docker prints sizes)."""
    if count < 1000:
        return f"{count} B"
    value = count / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


class PushProgress:
    """Shows a push as it goes: on a terminal one live line (layers done, bytes sent), else a line per layer."""

    def __init__(self, tag: str, stream: TextIO | None = None, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.tag = tag
        self._stream = stream if stream is not None else sys.stderr
        self.live = self._stream.isatty() if live is None else live
        self._clock = clock
        self.layers: dict[str, str] = {}  # layer id -> its last status
        self.sent: dict[str, int] = {}  # layer id -> bytes pushed so far
        self._shown = 0.0

    def __call__(self, event: dict) -> None:
        layer, status = event.get("id"), event.get("status", "")
        if not layer or not status:
            return  # "The push refers to repository ...", the digest line
        if status in ("Preparing", "Waiting"):
            self.layers.setdefault(layer, "waiting")
            return
        detail = event.get("progressDetail") or {}
        if status == "Pushing" and "current" in detail:
            self.sent[layer] = detail["current"]
        finished = status in ("Pushed", "Layer already exists") or status.startswith("Mounted from")
        self.layers[layer] = "done" if finished else "pushing"
        if self.live:
            if finished or self._clock() - self._shown > 0.2:
                self._shown = self._clock()
                done = sum(state == "done" for state in self.layers.values())
                self._stream.write(f"\r\x1b[Kpushing {self.tag}: {done}/{len(self.layers)} layers done, "
                                   f"{human_bytes(sum(self.sent.values()))} sent")
                self._stream.flush()
        elif finished:
            sent = f" ({human_bytes(self.sent[layer])})" if layer in self.sent else ""
            what = {"Pushed": "pushed", "Layer already exists": "already in the registry"}.get(
                status, status[:1].lower() + status[1:])
            self._stream.write(f"{self.tag}: layer {layer} {what}{sent}\n")
            self._stream.flush()

    def close(self) -> None:
        if self.live:
            self._stream.write("\n")
            self._stream.flush()


def push(client: docker.DockerClient, tag: str, on_event: EventHandler | None = None) -> str:
    """Pushes image `tag` to its registry; returns the manifest digest the registry stored (sha256:...).

    Every decoded push event goes to on_event. Raises EnvbuildError, in one
    line, when the engine or the registry refuses (unknown tag, registry
    unreachable, authentication required).
    """
    repository, name = docker.utils.parse_repository_tag(tag)
    digest = None
    with _engine_errors(f"push {tag}"):
        for event in client.api.push(repository, name or "latest", stream=True, decode=True):
            if "error" in event or "errorDetail" in event:
                message = event.get("error") or (event.get("errorDetail") or {}).get("message") or "unknown error"
                raise EnvbuildError(f"pushing {tag} failed: {_first_line(message)}")
            if isinstance(event.get("aux"), dict) and event["aux"].get("Digest"):
                digest = event["aux"]["Digest"]
            if on_event is not None:
                on_event(event)
    if digest is None:
        raise EnvbuildError(f"pushing {tag}: the engine ended the push without the registry's digest")
    return digest


# --- build context ------------------------------------------------------------


def make_context_tar(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    """A build context tar whose bytes depend only on the paths, contents and modes.

    Entries are sorted, owned by 0:0 with empty owner names and a fixed mtime,
    and every parent directory gets its own entry, so identical inputs always
    give identical bytes and the builder's cache sees identical files.
    """
    paths = {_checked_context_path(path): value for path, value in files.items()}
    directories = {parent for path in paths for parent in _parents(path)}
    if directories & paths.keys():
        clash = sorted(directories & paths.keys())[0]
        raise ValueError(f"build context path {clash!r} is both a file and a directory")

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(directories | paths.keys(), key=lambda p: p.split("/")):
            info = tarfile.TarInfo(path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = CONTEXT_MTIME
            if path in directories:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                content, mode = paths[path]
                info.mode = mode & 0o7777
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _checked_context_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"build context path {path!r} must be relative, normalised and inside the context")
    return path


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --- build event stream -------------------------------------------------------

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_COMPONENT = re.compile(r"^RUN\s+ENVBUILD_COMPONENT=([\"']?)([A-Za-z0-9_.+@-]+)\1(?:\s|$)")
_USING_CACHE = re.compile(r"^\s*---> Using cache$")
_RUNNING_IN = re.compile(r"^\s*---> Running in ([0-9a-f]+)$")
_LAYER = re.compile(r"^\s*---> ([0-9a-f]{12,64})$")
_REMOVING = re.compile(r"^Removing intermediate container ([0-9a-f]+)$")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]+)$")
_TAGGED = re.compile(r"^Successfully tagged \S+$")
_NONZERO_EXIT = re.compile(r"^The command .* returned a non-zero code: (\d+)$", re.DOTALL)
# Step stderr arrives wrapped in colour codes.
_ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")
# The builder writes each of its own messages as one event; a RUN's output
# chunk left without a newline must not swallow the next builder line.
_BUILDER_MESSAGE = re.compile(r"^(Step \d+/\d+ : |\s*---> |Removing intermediate container |Successfully )")


@dataclasses.dataclass
class BuildStep:
    number: int
    total: int
    instruction: str
    component: str | None
    started: float
    cached: bool = False
    image_id: str | None = None
    elapsed: float | None = None
    output: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=FAILURE_TAIL_LINES))

    @property
    def is_from(self) -> bool:
        return self.instruction.split(None, 1)[0].upper() == "FROM"

    def describe(self) -> str:
        instruction = self.instruction if len(self.instruction) <= 60 else self.instruction[:57] + "..."
        return f"step {self.number}/{self.total} ({instruction})"


class BuildTranscript:
    """Folds classic-builder events into BuildSteps; prints nothing.

    Subclasses override the _on_* hooks to present the build as it happens.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._partial_line = ""
        self.steps: list[BuildStep] = []
        self.image_id: str | None = None
        self.error: str | None = None
        self.running_container: str | None = None

    @property
    def current_step(self) -> BuildStep | None:
        return self.steps[-1] if self.steps else None

    @property
    def cached_steps(self) -> list[str]:
        """Instructions served from the layer cache."""
        return [step.instruction for step in self.steps if step.cached]

    @property
    def rebuilt_steps(self) -> list[str]:
        """Instructions that ran (or failed) instead of coming from the cache; FROM excluded."""
        return [step.instruction for step in self.steps if not step.cached and not step.is_from]

    @property
    def new_layer_ids(self) -> list[str]:
        """Layers this build committed, e.g. to remove what a failed build left behind."""
        return [s.image_id for s in self.steps if s.image_id and not s.cached and not s.is_from]

    def __call__(self, event: dict) -> None:
        self.feed(event)

    def feed(self, event: dict) -> None:
        if "stream" in event:
            self._feed_text(event["stream"])
        if "aux" in event and isinstance(event["aux"], dict) and "ID" in event["aux"]:
            self.image_id = event["aux"]["ID"]
        if "error" in event or "errorDetail" in event:
            self._flush_partial_line()
            detail = event.get("errorDetail") or {}
            self.error = event.get("error") or detail.get("message") or "unknown build error"
            self._finish_step()
            self._on_error(self.current_step, self.error)
        elif "status" in event:
            self._on_status(event)

    def _feed_text(self, text: str) -> None:
        if _BUILDER_MESSAGE.match(text):
            self._flush_partial_line()
        lines = (self._partial_line + _ANSI_SGR.sub("", text)).split("\n")
        self._partial_line = lines.pop()
        for line in lines:
            self._feed_line(line)

    def _flush_partial_line(self) -> None:
        if self._partial_line:
            line, self._partial_line = self._partial_line, ""
            self._feed_line(line)

    def _feed_line(self, raw_line: str) -> None:
        # A carriage return redraws the terminal line: keep what a terminal would show.
        line = raw_line.rstrip("\r").rsplit("\r", 1)[-1]
        step = self.current_step
        if match := _STEP.match(line):
            self._finish_step()
            instruction = match.group(3)
            component = _COMPONENT.match(instruction)
            self.steps.append(
                BuildStep(
                    number=int(match.group(1)),
                    total=int(match.group(2)),
                    instruction=instruction,
                    component=component.group(2) if component else None,
                    started=self._clock(),
                )
            )
            self._on_builder_line(line)
        elif step is not None and _USING_CACHE.match(line):
            step.cached = True
            self._on_builder_line(line)
            self._on_step_cached(step)
        elif match := _RUNNING_IN.match(line):
            self.running_container = match.group(1)
            self._on_builder_line(line)
            if step is not None:
                self._on_step_running(step)
        elif match := _REMOVING.match(line):
            if self.running_container and match.group(1).startswith(self.running_container):
                self.running_container = None
            self._on_builder_line(line)
        elif step is not None and (match := _LAYER.match(line)):
            step.image_id = match.group(1)
            self._on_builder_line(line)
        elif match := _BUILT.match(line):
            self._finish_step()
            self.image_id = self.image_id or match.group(1)
            self._on_builder_line(line)
        elif _TAGGED.match(line):
            self._on_builder_line(line)
        else:
            if step is not None:
                step.output.append(line)
            self._on_output(step, line)

    def _finish_step(self) -> None:
        step = self.current_step
        if step is not None and step.elapsed is None:
            step.elapsed = self._clock() - step.started
            self._on_step_finished(step)

    def close(self) -> None:
        """Called once the build is over; presentations release what they hold."""

    # Presentation hooks: no-ops here, BuildProgress prints.
    def _on_step_cached(self, step: BuildStep) -> None:
        pass

    def _on_step_running(self, step: BuildStep) -> None:
        pass

    def _on_step_finished(self, step: BuildStep) -> None:
        pass

    def _on_output(self, step: BuildStep | None, line: str) -> None:
        pass

    def _on_builder_line(self, line: str) -> None:
        pass

    def _on_status(self, event: dict) -> None:
        pass

    def _on_error(self, step: BuildStep | None, error: str) -> None:
        pass


class BuildProgress(BuildTranscript):
    """Progress of a build as it happens, per recipe component.

    On a terminal (unless verbose): finished components as lines ("<name>:
    built in 12.3s", "<name>: cached"), and under them one live line for the
    running component with its elapsed time and its last output line, redrawn
    as output comes and every second. Elsewhere: the same events as plain
    lines stamped with the seconds since the build started ("[  12.3s] building
    <name>..."). Verbose: also every line the builder and the steps print.
    Quiet: nothing but a failure. On failure: the failing step's last output
    lines (failure_tail: the engine's report on its log, once). Every value in
    `redact` (secret build settings) shows as ***.
    Pass it as build()'s on_event, and close() it after the build.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
        live: bool | None = None,
        quiet: bool = False,
        redact: Sequence[str] = (),
    ):
        super().__init__(clock)
        self._secrets = sorted(filter(None, redact), key=len, reverse=True)
        self._stream = stream if stream is not None else sys.stderr
        self.verbose = verbose
        self.quiet = quiet
        self.live = (self._stream.isatty() if live is None else live) and not verbose and not quiet
        self._started = clock()
        self._last_line = ""
        self._drawn = 0.0
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._closed = threading.Event()

    def _clean(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line

    def _write(self, line: str) -> None:
        line = self._clean(line)
        with self._lock:
            if self.live:
                self._stream.write(f"\r\x1b[K{line}\n")
                self._draw_live()
            else:
                self._stream.write(f"[{self._clock() - self._started:7.1f}s] {line}\n")
            self._stream.flush()

    def _say(self, line: str) -> None:
        if not self.quiet:
            self._write(line)

    def _draw_live(self) -> None:
        """The live line of the running component (caller holds the lock)."""
        step = self.current_step
        if step is None or step.component is None or step.elapsed is not None or step.cached:
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        text = f"  {step.component} {self._clock() - step.started:6.1f}s | {self._last_line}"
        self._stream.write(f"\r\x1b[K{text[:width]}")
        self._stream.flush()
        self._drawn = self._clock()

    def _tick(self) -> None:
        while not self._closed.wait(1.0):
            with self._lock:
                self._draw_live()

    def close(self) -> None:
        """Stops the live line's clock and leaves the cursor on a fresh line."""
        self._closed.set()
        if self.live:
            with self._lock:
                self._stream.write("\r\x1b[K")
                self._stream.flush()

    def _on_builder_line(self, line: str) -> None:
        if self.verbose:
            self._stream.write(self._clean(line) + "\n")
            self._stream.flush()

    def _on_output(self, step: BuildStep | None, line: str) -> None:
        if self.verbose:
            self._stream.write(self._clean(line) + "\n")
            self._stream.flush()
        elif self.live and line.strip():
            with self._lock:
                self._last_line = self._clean(line.strip())
                if self._clock() - self._drawn > 0.1:
                    self._draw_live()

    def _on_status(self, event: dict) -> None:
        # Pull progress bars repeat many times a second; only their milestones are worth a line.
        if self.verbose and "progress" not in event:
            layer = f"{event['id']}: " if event.get("id") else ""
            self._write(f"{layer}{event['status']}")

    def _on_step_cached(self, step: BuildStep) -> None:
        if step.component:
            self._say(f"{step.component}: cached")

    def _on_step_running(self, step: BuildStep) -> None:
        if step.component:
            self._last_line = ""
            if self.live:
                if self._ticker is None:
                    self._ticker = threading.Thread(target=self._tick, daemon=True)
                    self._ticker.start()
                with self._lock:
                    self._draw_live()
            else:
                self._say(f"building {step.component}...")

    def _on_step_finished(self, step: BuildStep) -> None:
        if step.component and not step.cached and self.error is None:
            self._say(f"{step.component}: built in {step.elapsed:.1f}s")

    def _on_error(self, step: BuildStep | None, error: str) -> None:
        if step is None:
            self._write(f"build failed: {concise_error(error)}")
            return
        name = step.component or step.describe()
        elapsed = f" after {step.elapsed:.1f}s" if step.elapsed is not None else ""
        self._write(f"{name}: FAILED{elapsed}")
        tail = failure_tail(step.output)
        if tail and not self.verbose:
            self._write(f"--- last {len(tail)} output lines of {name} ---")
            for line in tail:
                self._write(f"    {line}")
            self._write("---")
        self._write(f"error: {concise_error(error)}")


# --- building -----------------------------------------------------------------


def build(
    client: docker.DockerClient,
    context_tar: bytes,
    tag: str | None,
    labels: dict[str, str] | None = None,
    nocache: bool = False,
    pull: bool = False,
    on_event: EventHandler | None = None,
    network_mode: str | None = None,
    buildargs: Mapping[str, str] | None = None,
) -> str:
    """Build the context's Dockerfile into `tag` (None: untagged); return the image id (sha256:...).

    buildargs are the values of the Dockerfile's ARGs (`docker build --build-arg`).

    network_mode is the RUN steps' network, as `docker build --network` takes it
    (e.g. "host": 127.0.0.1 inside a step is the machine's loopback); None is the
    engine's default bridge. Every decoded builder event goes to on_event as it arrives. A failing step
    raises BuildFailed. Ctrl-C closes the stream, which makes the engine cancel
    the build, removes the step container if one was running, and re-raises.
    """
    transcript = BuildTranscript()
    responses: list[requests.Response] = []

    # docker-py's build stream hides its HTTP response, and only closing that
    # response tells the engine to cancel; a session hook hands it to us.
    def remember_response(response: requests.Response, *args, **kwargs) -> None:
        responses.append(response)

    client.api.hooks["response"].append(remember_response)
    try:
        with _engine_errors("start the build"):
            events = client.api.build(
                fileobj=io.BytesIO(context_tar),
                custom_context=True,
                encoding=None,  # plain tar: over a local socket compression only costs CPU
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                nocache=nocache,
                pull=pull,
                labels=labels,
                network_mode=network_mode,
                buildargs=dict(buildargs or {}),
                timeout=None,  # a quiet RUN may take longer than any read timeout
            )
    finally:
        client.api.hooks["response"].remove(remember_response)

    interrupted = False
    try:
        _follow_events(events, transcript, on_event)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        _close(events, responses)
        if interrupted:
            _remove_step_container(client, transcript.running_container)

    if transcript.error is not None:
        raise BuildFailed(transcript.error, transcript.current_step)
    if transcript.image_id is None:
        raise BuildFailed("the engine ended the build without reporting an image")
    with _engine_errors(f"inspect the built image {tag or transcript.image_id}"):
        return client.api.inspect_image(transcript.image_id)["Id"]


def _follow_events(events: Iterator[dict], transcript: BuildTranscript, on_event: EventHandler | None) -> None:
    try:
        for event in events:
            transcript.feed(event)
            if on_event is not None:
                on_event(event)
            if transcript.error is not None:
                return
    except docker.errors.APIError as exc:
        # The engine rejects some builds (bad Dockerfile, missing base) before streaming.
        raise BuildFailed(exc.explanation or _first_line(exc), transcript.current_step) from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineUnreachable(
            f"lost the Docker engine during the build: {unreachable_message(os.environ.get('DOCKER_HOST', ''), exc)}"
        ) from None


def _close(events: Generator[dict, None, None], responses: list[requests.Response]) -> None:
    events.close()
    for response in responses:
        response.close()


def _remove_step_container(client: docker.DockerClient, container_id: str | None) -> None:
    if container_id is None:
        return
    try:
        client.api.remove_container(container_id, force=True)
    except (docker.errors.DockerException, requests.RequestException):
        pass  # the engine may be removing it already as part of the cancel


# --- running in an image --------------------------------------------------------


def pull_image(client: docker.DockerClient, ref: str) -> None:
    """Pull image `ref` (name[:tag] or name@sha256:...) from its registry; EnvbuildError, one line, when
    the engine cannot (no such image, registry unreachable, a layer that fails half way)."""
    repository, tag = docker.utils.parse_repository_tag(ref)
    with _engine_errors(f"pull {ref}"):
        try:
            events = list(client.api.pull(repository, tag=tag or "latest", stream=True, decode=True))
        except docker.errors.APIError as exc:
            # The explanation is the registry's answer, without the engine's URL around it.
            raise EnvbuildError(f"the Docker engine could not pull {ref}: {_first_line(exc.explanation or exc)}") \
                from None
    for event in events:
        error = event.get("error") or (event.get("errorDetail") or {}).get("message")
        if error:
            raise EnvbuildError(f"the Docker engine could not pull {ref}: {_first_line(error)}")


def run_in_image(client: docker.DockerClient, image: str, command: list[str],
                 network_mode: str | None = None, binds: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run `command` (an argv, no shell; the image's entrypoint cleared) in a new container of `image`.

    Returns its exit status, stdout and stderr (text, undecodable bytes replaced).
    network_mode is as `docker run --network` takes it (None: the engine's default);
    `binds` maps host paths to container paths, each written `PATH` (read-write) or
    `PATH:ro`. The container is removed afterwards, also on failure or Ctrl-C; an
    engine that cannot create or start it raises EnvbuildError.
    """
    host_config = client.api.create_host_config(
        network_mode=network_mode, binds=[f"{host}:{inside}" for host, inside in (binds or {}).items()])
    with _engine_errors(f"create a container of {image}"):
        container = client.api.create_container(image, command, entrypoint=[""], host_config=host_config)
    try:
        with _engine_errors(f"run a container of {image}"):
            client.api.start(container["Id"])
            status = client.api.wait(container["Id"])["StatusCode"]
            stdout = client.api.logs(container["Id"], stdout=True, stderr=False)
            stderr = client.api.logs(container["Id"], stdout=False, stderr=True)
    finally:
        try:
            client.api.remove_container(container["Id"], force=True)
        except (docker.errors.DockerException, requests.RequestException):
            pass  # an engine gone mid-run has already been reported
    return status, stdout.decode(errors="replace"), stderr.decode(errors="replace")


# The sources server's port, in a network namespace that only it and the build's steps share.
SOURCES_PORT = 7531
SOURCES_MOUNT = "/envbuild-sources"
SOURCES_LABEL = "io.envbuild.sources-server"  # on the server's container: the directory it serves
SOURCES_START_TIMEOUT = 30  # seconds


@contextmanager
def sources_server(client: docker.DockerClient, image: str, directory: Path, program: str) -> Iterator[str]:
    """Serves `directory` read-only over HTTP from a container of `image` that has no network
    but its own loopback (its python3 running `program`, envbuild/runtime/serve_sources.py);
    yields the network mode ("container:<id>") under which build steps reach it, and nothing
    else, at http://127.0.0.1:SOURCES_PORT. The container is removed afterwards.

    Raises EnvbuildError when the server does not answer: no python3 or git in the image, or
    no MANIFEST.json in the directory as the engine sees it (a remote engine sees another machine).
    """
    command = ["python3", "-c", program, SOURCES_MOUNT, str(SOURCES_PORT)]
    probe = ["python3", "-c", "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)",
             f"http://127.0.0.1:{SOURCES_PORT}/MANIFEST.json"]
    with _engine_errors(f"start a container of {image} to serve {directory}"):
        host_config = client.api.create_host_config(binds=[f"{directory.resolve()}:{SOURCES_MOUNT}:ro"],
                                                    network_mode="none")
        container = client.api.create_container(image, command, host_config=host_config, entrypoint=[],
                                                labels={SOURCES_LABEL: str(directory.resolve())})["Id"]
    try:
        with _engine_errors(f"serve {directory} from a container of {image}"):
            client.api.start(container)
            deadline = time.monotonic() + SOURCES_START_TIMEOUT
            while True:
                if not client.api.inspect_container(container)["State"]["Running"]:
                    why = last_line(client.api.logs(container).decode(errors="replace"))
                    raise EnvbuildError(f"the sources server (python3 in {image}) stopped: {why}")
                exec_id = client.api.exec_create(container, probe)["Id"]
                output = client.api.exec_start(exec_id).decode(errors="replace")
                if client.api.exec_inspect(exec_id)["ExitCode"] == 0:
                    break
                if "404" in output or time.monotonic() > deadline:
                    raise EnvbuildError(f"{directory} has no MANIFEST.json where the Docker engine sees it: give a "
                                        "directory written by envbuild fetch, on the engine's machine")
                time.sleep(0.2)
        yield f"container:{container}"
    finally:
        _remove_step_container(client, container)
