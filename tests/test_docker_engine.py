"""envbuild.docker_engine against a real Docker engine, plus BuildProgress on recorded events.

The engine tests start dockerd through scripts/ensure-docker and build on a
locally made base image (tests/docker_base.py); nothing here mocks docker-py.
"""

from __future__ import annotations

import io
import re
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from docker_base import ImageSession, ensure_base_image
from envbuild.run.docker_engine import (
    BuildFailed,
    BuildProgress,
    PushProgress,
    BuildTranscript,
    EngineUnreachable,
    base_image_present,
    build,
    connect,
    image_exists,
    make_context_tar,
)
from envbuild.errors import EnvbuildError

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- helpers (fixtures engine, base_image, session: conftest.py) ---------------


def component_dockerfile(base: str, a_script: str, b_script: str) -> str:
    return (
        f"FROM {base}\n"
        "# envbuild component: a\n"
        f"RUN ENVBUILD_COMPONENT=a sh -c '{a_script}'\n"
        "# envbuild component: b\n"
        f"RUN ENVBUILD_COMPONENT=b sh -c '{b_script}'\n"
    )


@dataclass
class Built:
    image_id: str
    progress: BuildProgress
    events: list[dict]

    @property
    def shown(self) -> list[str]:
        """The progress lines, without their time stamps."""
        return [re.sub(r"^\[ *[\d.]+s\] ", "", line) for line in self.progress.shown.getvalue().splitlines()]


class RecordingProgress(BuildProgress):
    def __init__(self, verbose: bool = False, clock=time.monotonic, **options):
        self.shown = io.StringIO()
        super().__init__(stream=self.shown, verbose=verbose, clock=clock, **options)


def build_dockerfile(client, session: ImageSession, dockerfile: str, tag: str) -> Built:
    """Build with the session's labels; the session learns every new layer, even of a failed build."""
    context = make_context_tar({"Dockerfile": (dockerfile.encode(), 0o644)})
    events: list[dict] = []
    progress = RecordingProgress()

    def on_event(event: dict) -> None:
        events.append(event)
        progress(event)

    try:
        image_id = build(client, context, tag, labels=session.labels, on_event=on_event)
    finally:
        session.track(progress)
    return Built(image_id, progress, events)


@pytest.fixture(scope="module")
def first_build(engine, base_image, session):
    # The session id in layer a keeps a previous run's cache from answering.
    a_script = f"echo compiling a; echo {session.id} > /a"
    dockerfile = component_dockerfile(base_image, a_script, "echo compiling b; echo one > /b")
    tag = session.tag("three-layers")
    return {"a_script": a_script, "dockerfile": dockerfile, "tag": tag,
            "built": build_dockerfile(engine, session, dockerfile, tag)}


# --- real engine --------------------------------------------------------------


@pytest.mark.docker
def test_build_streams_events_and_produces_the_image(engine, session, first_build):
    built = first_build["built"]
    stream_text = "".join(event.get("stream", "") for event in built.events)
    assert "Step 2/4 : RUN ENVBUILD_COMPONENT=a" in stream_text
    assert "compiling a" in stream_text

    assert image_exists(engine, first_build["tag"])
    assert engine.api.inspect_image(first_build["tag"])["Id"] == built.image_id
    assert built.image_id.startswith("sha256:")

    output = engine.containers.run(first_build["tag"], ["cat", "/a", "/b"], remove=True, labels=session.labels)
    assert output.decode().split() == [session.id, "one"]

    assert built.progress.cached_steps == []
    assert [step.split(" sh -c")[0] for step in built.progress.rebuilt_steps[:2]] == [
        "RUN ENVBUILD_COMPONENT=a",
        "RUN ENVBUILD_COMPONENT=b",
    ]
    assert built.progress.rebuilt_steps[2].startswith("LABEL ")  # build labels come last
    # Quiet by default: component lines only, no step output.
    assert [line.split(" in ")[0] for line in built.shown] == ["building a...", "a: built", "building b...", "b: built"]


@pytest.mark.docker
def test_identical_rebuild_is_all_cache_hits(engine, session, first_build):
    first = first_build["built"]
    again = build_dockerfile(engine, session, first_build["dockerfile"], first_build["tag"])

    assert again.image_id == first.image_id
    assert again.progress.rebuilt_steps == []
    assert again.progress.cached_steps == first.progress.rebuilt_steps
    assert sum(event.get("stream", "").strip() == "---> Using cache" for event in again.events) == 3
    assert again.shown == ["a: cached", "b: cached"]


@pytest.mark.docker
def test_changing_the_second_layer_reruns_only_it_and_later_steps(engine, base_image, session, first_build):
    first = first_build["built"]
    dockerfile = component_dockerfile(base_image, first_build["a_script"], "echo compiling b; echo two > /b")
    changed = build_dockerfile(engine, session, dockerfile, session.tag("three-layers-b2"))

    assert changed.image_id != first.image_id
    assert changed.progress.cached_steps == [first.progress.rebuilt_steps[0]]
    assert [s.component for s in changed.progress.steps if s.cached] == ["a"]
    assert len(changed.progress.rebuilt_steps) == 2
    assert changed.progress.rebuilt_steps[0].startswith("RUN ENVBUILD_COMPONENT=b ")
    assert "echo two" in changed.progress.rebuilt_steps[0]
    assert changed.shown[0] == "a: cached"


@pytest.mark.docker
def test_failing_run_raises_build_failed_with_component_and_output(engine, base_image, session, first_build):
    dockerfile = component_dockerfile(
        base_image, first_build["a_script"], "echo fetching sources; echo checksum mismatch >&2; exit 7"
    )
    tag = session.tag("failing")
    progress = RecordingProgress()
    context = make_context_tar({"Dockerfile": (dockerfile.encode(), 0o644)})

    with pytest.raises(BuildFailed) as failure:
        try:
            build(engine, context, tag, labels=session.labels, on_event=progress)
        finally:
            session.track(progress)

    error = failure.value
    assert isinstance(error, EnvbuildError)
    assert error.component == "b"
    assert "checksum mismatch" in error.output_tail
    assert "fetching sources" in error.output_tail
    assert str(error) == "image build failed in component 'b' (step 3/4): the command exited with code 7"
    assert "returned a non-zero code: 7" in error.error
    assert not image_exists(engine, tag)

    shown = progress.shown.getvalue()
    assert "a: cached" in shown
    assert "b: FAILED after" in shown
    assert "    checksum mismatch" in shown
    assert shown.rstrip().endswith("error: the command exited with code 7")


@pytest.mark.docker
def test_rejected_dockerfile_and_failing_copy_raise_build_failed(engine, base_image, session):
    def attempt(dockerfile: str) -> BuildFailed:
        with pytest.raises(BuildFailed) as failure:
            build(engine, make_context_tar({"Dockerfile": (dockerfile.encode(), 0o644)}), session.tag("rejected"))
        return failure.value

    parse_error = attempt(f"FROM {base_image}\nFORM typo\n")
    assert parse_error.step is None
    assert str(parse_error) == "image build failed: dockerfile parse error line 2: unknown instruction: FORM"

    copy_error = attempt(f"FROM {base_image}\nCOPY missing.txt /\n")
    assert copy_error.component is None
    assert str(copy_error).startswith("image build failed in step 2/2 (COPY missing.txt /): COPY failed:")


@pytest.mark.docker
def test_ctrl_c_cancels_the_build_and_leaves_no_step_container(engine, base_image, session):
    dockerfile = f"FROM {base_image}\nRUN ENVBUILD_COMPONENT=slow sh -c 'echo {session.id}; sleep 120'\n"
    tag = session.tag("interrupted")
    transcript = BuildTranscript()
    seen_containers: list[str] = []

    def interrupt_once_running(event: dict) -> None:
        transcript(event)
        if transcript.running_container and transcript.current_step.output:
            seen_containers.append(transcript.running_container)
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        build(engine, make_context_tar({"Dockerfile": (dockerfile.encode(), 0o644)}), tag,
              labels=session.labels, on_event=interrupt_once_running)
    assert time.monotonic() - started < 60

    [container_id] = seen_containers
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and engine.containers.list(all=True, filters={"id": container_id}):
        time.sleep(0.2)
    assert engine.containers.list(all=True, filters={"id": container_id}) == []
    assert not image_exists(engine, tag)
    # The engine still answers builds afterwards.
    assert base_image_present(engine, base_image)


@pytest.mark.docker
def test_image_presence(engine, base_image, session):
    assert image_exists(engine, base_image)
    assert base_image_present(engine, base_image)
    assert base_image_present(engine, "scratch")
    assert not image_exists(engine, session.tag("never-built"))
    assert not base_image_present(engine, session.tag("never-built"))


@pytest.mark.docker
def test_cached_base_image_is_reused_quickly(engine, base_image):
    started = time.monotonic()
    assert ensure_base_image(engine) == base_image
    assert time.monotonic() - started < 1.0
    assert base_image.startswith("envbuild-test/base:")


@pytest.mark.docker
def test_session_cleanup_removes_its_images_containers_and_failed_layers(engine, base_image):
    own_session = ImageSession()
    good = f"FROM {base_image}\nRUN ENVBUILD_COMPONENT=x sh -c 'echo {own_session.id} > /x'\n"
    good_build = build_dockerfile(engine, own_session, good, own_session.tag("good"))
    bad = f"FROM {base_image}\nRUN ENVBUILD_COMPONENT=x sh -c 'echo {own_session.id} > /x'\nRUN exit 1\n"
    with pytest.raises(BuildFailed):
        build_dockerfile(engine, own_session, bad, own_session.tag("bad"))
    container = engine.containers.create(own_session.tag("good"), ["true"])
    layer_ids = good_build.progress.new_layer_ids

    own_session.cleanup(engine)

    assert not image_exists(engine, own_session.tag("good"))
    assert not image_exists(engine, good_build.image_id)
    assert all(not image_exists(engine, layer) for layer in layer_ids)
    assert engine.containers.list(all=True, filters={"id": container.id}) == []
    assert image_exists(engine, base_image)


# --- engine unreachable -------------------------------------------------------


def test_unreachable_engine_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(EngineUnreachable) as failure:
        connect()
    message = str(failure.value)
    assert "\n" not in message
    assert "DOCKER_HOST=unix:///nonexistent.sock" in message
    assert "start dockerd" in message
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_unreachable_engine_gives_no_traceback_to_a_caller_that_prints_errors():
    program = (
        "from envbuild.run.docker_engine import connect\n"
        "from envbuild.errors import EnvbuildError\n"
        "import sys\n"
        "try:\n    connect()\n"
        "except EnvbuildError as exc:\n    sys.exit(f'envbuild: {exc}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"},
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop DAC override"
)
def test_permission_denied_on_socket_names_the_socket_and_the_docker_group(tmp_path):
    # A socket only another user may open; root without CAP_DAC_OVERRIDE then gets EACCES.
    socket_path = tmp_path / "engine.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(socket_path))
    listener.listen(1)
    os.chown(socket_path, 65534, 65534)
    os.chmod(socket_path, 0o600)
    program = (
        "from envbuild.run.docker_engine import connect\n"
        "from envbuild.errors import EnvbuildError\n"
        "try:\n    connect()\n"
        "except EnvbuildError as exc:\n    print(exc)\n"
    )
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", program],
            env={**os.environ, "DOCKER_HOST": f"unix://{socket_path}"},
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
        )
    finally:
        listener.close()
    assert result.stdout.startswith(f"permission denied on the Docker socket {socket_path}"), result.stderr
    assert "'docker' group" in result.stdout and "sudo" in result.stdout


# --- build context ------------------------------------------------------------


def test_context_tar_is_deterministic_and_normalised():
    files = {
        "Dockerfile": (b"FROM scratch\n", 0o644),
        "steps/ucx/install.sh": (b"#!/bin/sh\necho ucx\n", 0o755),
        "steps/a.sh": (b"echo a\n", 0o600),
    }
    first = make_context_tar(files)
    assert make_context_tar(dict(reversed(list(files.items())))) == first

    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [
            "Dockerfile", "steps", "steps/a.sh", "steps/ucx", "steps/ucx/install.sh",
        ]
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
        assert {m.name: m.mode for m in members if m.isdir()} == {"steps": 0o755, "steps/ucx": 0o755}
        assert archive.getmember("steps/ucx/install.sh").mode == 0o755
        assert archive.getmember("steps/a.sh").mode == 0o600
        assert archive.extractfile("steps/ucx/install.sh").read() == b"#!/bin/sh\necho ucx\n"


@pytest.mark.parametrize("bad_path", ["/etc/passwd", "../outside", "a//b", "a/./b", ""])
def test_context_tar_rejects_paths_outside_the_context(bad_path):
    with pytest.raises(ValueError):
        make_context_tar({bad_path: (b"", 0o644)})


def test_context_tar_rejects_a_path_that_is_file_and_directory():
    with pytest.raises(ValueError):
        make_context_tar({"steps": (b"", 0o644), "steps/a.sh": (b"", 0o644)})


# --- BuildProgress on recorded events -----------------------------------------
# Recorded from Docker 20.10's classic builder (docker-py, decode=True).

BASE = "envbuild-test/base:2df90aad852ccc20"
RUN_A = "RUN ENVBUILD_COMPONENT=a sh -c 'echo hello-a; printf partial; echo \" end\"; echo token-1 > /a'"
RUN_B_OK = "RUN ENVBUILD_COMPONENT=b sh -c 'echo doing b; echo oops >&2; exit 0'"
RUN_B_FAIL = "RUN ENVBUILD_COMPONENT=b sh -c 'echo doing b; echo oops >&2; exit 3'"
FAILURE_MESSAGE = (
    "The command '/bin/sh -c ENVBUILD_COMPONENT=b sh -c 'echo doing b; echo oops >&2; exit 3'' "
    "returned a non-zero code: 3"
)

FRESH_BUILD_EVENTS = [
    {"stream": f"Step 1/4 : FROM {BASE}"},
    {"stream": "\n"},
    {"stream": " ---> 38bc5bbe0e6a\n"},
    {"stream": f"Step 2/4 : {RUN_A}"},
    {"stream": "\n"},
    {"stream": " ---> Running in ba532fc81642\n"},
    {"stream": "hello-a\npartial end\n"},
    {"stream": "Removing intermediate container ba532fc81642\n"},
    {"stream": " ---> 3b69d874d449\n"},
    {"stream": f"Step 3/4 : {RUN_B_OK}"},
    {"stream": "\n"},
    {"stream": " ---> Running in 131d789ab567\n"},
    {"stream": "doing b\n"},
    {"stream": "\u001b[91moops\n\u001b[0m"},
    {"stream": "Removing intermediate container 131d789ab567\n"},
    {"stream": " ---> e95e93378bb1\n"},
    {"stream": "Step 4/4 : LABEL x=1"},
    {"stream": "\n"},
    {"stream": " ---> Running in 751f51b9b612\n"},
    {"stream": "Removing intermediate container 751f51b9b612\n"},
    {"stream": " ---> 7d60db21c060\n"},
    {"aux": {"ID": "sha256:7d60db21c06044ede7158adc66d6cefcccf041de0cb6c6399c184117ff82d821"}},
    {"stream": "Successfully built 7d60db21c060\n"},
    {"stream": "Successfully tagged envbuild-test/scratch:rec\n"},
]

FAILED_BUILD_EVENTS = [
    {"stream": f"Step 1/4 : FROM {BASE}"},
    {"stream": "\n"},
    {"stream": " ---> 38bc5bbe0e6a\n"},
    {"stream": f"Step 2/4 : {RUN_A}"},
    {"stream": "\n"},
    {"stream": " ---> Using cache\n"},
    {"stream": " ---> 3b69d874d449\n"},
    {"stream": f"Step 3/4 : {RUN_B_FAIL}"},
    {"stream": "\n"},
    {"stream": " ---> Running in 4e5ff1cbd07e\n"},
    {"stream": "\u001b[91moops\n\u001b[0m"},
    {"stream": "doing b\n"},
    {"stream": "Removing intermediate container 4e5ff1cbd07e\n"},
    {"errorDetail": {"code": 3, "message": FAILURE_MESSAGE}, "error": FAILURE_MESSAGE},
]


def recorded_progress(events: list[dict], verbose: bool = False, **options) -> RecordingProgress:
    """Each event arrives 0.5 s after the one before."""
    now = [10.0]
    progress = RecordingProgress(verbose=verbose, clock=lambda: now[0], **options)
    for event in events:
        now[0] += 0.5
        progress(event)
    progress.close()
    return progress


def test_progress_quiet_shows_components_and_their_times():
    progress = recorded_progress(FRESH_BUILD_EVENTS)
    assert progress.shown.getvalue().splitlines() == [
        "[    3.0s] building a...",
        "[    5.5s] a: built in 3.0s",
        "[    6.0s] building b...",
        "[    9.0s] b: built in 3.5s",
    ]
    assert progress.rebuilt_steps == [RUN_A, RUN_B_OK, "LABEL x=1"]
    assert progress.cached_steps == []
    assert progress.new_layer_ids == ["3b69d874d449", "e95e93378bb1", "7d60db21c060"]
    assert progress.image_id.startswith("sha256:7d60db21c060")
    assert [step.component for step in progress.steps] == [None, "a", "b", None]
    assert list(progress.steps[1].output) == ["hello-a", "partial end"]
    assert list(progress.steps[2].output) == ["doing b", "oops"]
    assert progress.running_container is None


def test_progress_verbose_shows_every_line():
    shown = recorded_progress(FRESH_BUILD_EVENTS, verbose=True).shown.getvalue().splitlines()
    assert f"Step 2/4 : {RUN_A}" in shown
    assert "hello-a" in shown and "partial end" in shown and "oops" in shown
    assert shown.index("[    3.0s] building a...") < shown.index("hello-a") < shown.index("[    5.5s] a: built in 3.0s")
    assert "Successfully tagged envbuild-test/scratch:rec" in shown


# What the failure of b shows, whatever came before.
FAILURE_SHOWN = [
    "[    7.0s] b: FAILED after 2.5s",
    "[    7.0s] --- last 2 output lines of b ---",
    "[    7.0s]     oops",
    "[    7.0s]     doing b",
    "[    7.0s] ---",
    "[    7.0s] error: the command exited with code 3",
]


def test_progress_on_failure_names_component_and_shows_its_last_lines():
    progress = recorded_progress(FAILED_BUILD_EVENTS)
    assert progress.shown.getvalue().splitlines() == [
        "[    3.0s] a: cached",
        "[    5.0s] building b...",
        *FAILURE_SHOWN,
    ]
    assert progress.cached_steps == [RUN_A]
    assert progress.rebuilt_steps == [RUN_B_FAIL]
    assert progress.new_layer_ids == []
    failure = BuildFailed(progress.error, progress.current_step)
    assert failure.component == "b"
    assert failure.output_tail == ["oops", "doing b"]


def test_progress_failure_in_verbose_mode_does_not_repeat_the_output():
    shown = recorded_progress(FAILED_BUILD_EVENTS, verbose=True).shown.getvalue().splitlines()
    assert shown.count("doing b") == 1
    assert shown[-1] == "[    7.0s] error: the command exited with code 3"


def test_progress_keeps_what_a_terminal_shows_and_only_the_last_lines():
    events = [
        {"stream": "Step 1/1 : RUN ENVBUILD_COMPONENT=\"nccl\" make -j2\n"},
        {"stream": " ---> Running in 0123456789ab\n"},
        {"stream": "progress 10%\rprogress 50%\rprogress 100%\n"},
        *({"stream": f"compiling unit {n}\n"} for n in range(40)),
        {"stream": "linking without newline"},
        {"stream": "Removing intermediate container 0123456789ab\n"},
        {"stream": " ---> abcdefabcdef\n"},
        {"stream": "Successfully built abcdefabcdef\n"},
    ]
    progress = recorded_progress(events)
    [step] = progress.steps
    assert step.component == "nccl"
    assert len(step.output) == 30
    assert step.output[-1] == "linking without newline"
    assert step.output[0] == "compiling unit 11"
    assert progress.image_id == "abcdefabcdef"
    assert progress.shown.getvalue().splitlines() == ["[    1.0s] building nccl...", "[   23.5s] nccl: built in 23.0s"]


def test_progress_on_a_terminal_is_one_live_line_for_the_running_component():
    """Elapsed time and last output line, redrawn in place; finished components stay as lines."""
    shown = recorded_progress(FRESH_BUILD_EVENTS, live=True).shown.getvalue()
    assert shown == (
        "\r\x1b[K  a    0.5s | \r\x1b[K  a    1.0s | hello-a"
        "\r\x1b[Ka: built in 3.0s\n"
        "\r\x1b[K  b    0.5s | \r\x1b[K  b    1.0s | doing b\r\x1b[K  b    1.5s | oops"
        "\r\x1b[Kb: built in 3.5s\n"
        "\r\x1b[K"
    )


def test_progress_quiet_shows_only_a_failure():
    assert recorded_progress(FRESH_BUILD_EVENTS, quiet=True).shown.getvalue() == ""
    assert recorded_progress(FAILED_BUILD_EVENTS, quiet=True).shown.getvalue().splitlines() == FAILURE_SHOWN


def test_progress_error_before_any_step():
    progress = recorded_progress([{"error": "dockerfile parse error line 1: unknown instruction: FORM"}])
    assert progress.shown.getvalue() == "[    0.5s] build failed: dockerfile parse error line 1: unknown instruction: FORM\n"
    assert str(BuildFailed(progress.error, progress.current_step)) == (
        "image build failed: dockerfile parse error line 1: unknown instruction: FORM"
    )


# --- PushProgress on recorded events ------------------------------------------
# Recorded from Docker 20.10 pushing to a registry on 127.0.0.1 (docker-py, decode=True).

PUSH_EVENTS = [
    {"status": "The push refers to repository [127.0.0.1:5000/t/x]"},
    {"status": "Preparing", "progressDetail": {}, "id": "4f4fb700ef54"},
    {"status": "Preparing", "progressDetail": {}, "id": "a907e4fbf553"},
    {"status": "Waiting", "progressDetail": {}, "id": "a907e4fbf553"},
    {"status": "Pushing", "progressDetail": {"current": 512, "total": 2560}, "progress": "[=>  ]", "id": "4f4fb700ef54"},
    {"status": "Pushing", "progressDetail": {"current": 2560, "total": 2560}, "progress": "[===>]", "id": "4f4fb700ef54"},
    {"status": "Pushed", "progressDetail": {}, "id": "4f4fb700ef54"},
    {"status": "Layer already exists", "progressDetail": {}, "id": "a907e4fbf553"},
    {"status": "a: digest: sha256:" + "c" * 64 + " size: 1234"},
    {"progressDetail": {}, "aux": {"Tag": "a", "Digest": "sha256:" + "c" * 64, "Size": 1234}},
]


def recorded_push(live: bool) -> str:
    now = [0.0]
    shown = io.StringIO()
    progress = PushProgress("127.0.0.1:5000/t/x:a", stream=shown, live=live, clock=lambda: now[0])
    for event in PUSH_EVENTS:
        now[0] += 0.5
        progress(event)
    progress.close()
    return shown.getvalue()


def test_push_progress_is_a_line_per_layer_elsewhere_than_a_terminal():
    assert recorded_push(live=False).splitlines() == [
        "127.0.0.1:5000/t/x:a: layer 4f4fb700ef54 pushed (2.6 kB)",
        "127.0.0.1:5000/t/x:a: layer a907e4fbf553 already in the registry",
    ]


def test_push_progress_on_a_terminal_is_one_live_line():
    assert recorded_push(live=True) == (
        "\r\x1b[Kpushing 127.0.0.1:5000/t/x:a: 0/2 layers done, 512 B sent"
        "\r\x1b[Kpushing 127.0.0.1:5000/t/x:a: 0/2 layers done, 2.6 kB sent"
        "\r\x1b[Kpushing 127.0.0.1:5000/t/x:a: 1/2 layers done, 2.6 kB sent"
        "\r\x1b[Kpushing 127.0.0.1:5000/t/x:a: 2/2 layers done, 2.6 kB sent"
        "\n"
    )
