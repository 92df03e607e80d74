"""The seven patches on the real vLLM 0.17.1 files (tests/vllm_wheel.py downloads the wheel once).

The applier runs as the runtime script runs it (`python -I -`). Behaviour that
runs without a GPU is exercised by functions taken from the patched files with
`ast` and executed against small fakes: importing the real modules needs torch
and most of vLLM's dependencies, which are not installed here.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import logging
import os
import py_compile
import queue
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import vllm_wheel
from envbuild.runtime import patchapply
from envbuild.spec import patches
from patching import run_applier, snapshot, write_manifest

VLLM_PATCHES = [
    "moriep-fp8-compat", "moriio-save-kv-bounded-wait", "moriio-load-kv-bounded-wait",
    "scheduler-read-mode", "moriio-engine-timeouts", "idle-kv-reaper",
]
LAYER = "vllm/model_executor/layers/fused_moe/layer.py"
MORI_PREPARE = "vllm/model_executor/layers/fused_moe/mori_prepare_finalize.py"
CONNECTOR = "vllm/distributed/kv_transfer/kv_connector/v1/moriio/moriio_connector.py"
ENGINE = "vllm/distributed/kv_transfer/kv_connector/v1/moriio/moriio_engine.py"
SCHEDULER = "vllm/v1/core/sched/scheduler.py"
TARGETS = [LAYER, MORI_PREPARE, CONNECTOR, ENGINE, SCHEDULER]
PROG_PREFIX = "envbuild-patch: "


@pytest.fixture(scope="session")
def vllm_specs(catalog):
    return patches.select(catalog, VLLM_PATCHES)


# ---------------------------------------------------------------------------
# The vLLM patches on the real 0.17.1 files


@pytest.fixture(scope="session")
def vllm_tree():
    return vllm_wheel.extracted()


@pytest.fixture
def site(tmp_path, vllm_tree):
    return vllm_wheel.site_packages(tmp_path / "site", TARGETS)


@pytest.fixture
def manifest(tmp_path, vllm_specs):
    return write_manifest(tmp_path / "vllm.manifest", vllm_specs)


@pytest.fixture
def patched_site(site, manifest):
    result = run_applier("apply", manifest, site)
    assert result.returncode == 0, result.stderr
    return site


def test_patch_paths_are_the_targets(vllm_specs):
    paths = {path for spec in vllm_specs for path, _ in spec.for_applier().changes()}
    assert paths == set(TARGETS)


@pytest.mark.vllm
def test_every_patch_applies_then_a_second_run_changes_nothing(site, manifest):
    original = snapshot(site)
    result = run_applier("apply", manifest, site)
    assert result.returncode == 0, result.stderr
    for name in VLLM_PATCHES:
        assert f"{PROG_PREFIX}{name}: applied to vllm 0.17.1" in result.stdout
    once = snapshot(site)
    assert all(once[target] != original[target] for target in TARGETS)
    times = {target: (site / target).stat().st_mtime_ns for target in TARGETS}
    again = run_applier("apply", manifest, site)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already applied") == len(VLLM_PATCHES)
    assert snapshot(site) == once
    assert {target: (site / target).stat().st_mtime_ns for target in TARGETS} == times


@pytest.mark.vllm
def test_check_reports_without_changing_anything(site, manifest, vllm_specs):
    original = snapshot(site)
    assert [o.status for o in patches.check(vllm_specs, sys.executable, site)] == [patchapply.APPLICABLE] * len(VLLM_PATCHES)
    result = run_applier("check", manifest, site)
    assert result.returncode == 0 and result.stdout.count(": applicable") == len(VLLM_PATCHES)
    assert snapshot(site) == original
    assert run_applier("apply", manifest, site).returncode == 0
    report = patches.format_check(patches.check(vllm_specs, sys.executable, site))
    assert report.count(" applied ") == len(VLLM_PATCHES), report
    missing = {o.name: o.status for o in patches.check(vllm_specs, sys.executable, site.parent / "empty")}
    assert missing["scheduler-read-mode"] == patchapply.NOT_INSTALLED
    assert missing["idle-kv-reaper"] == patchapply.BLOCKED


def parse(site: Path, relative: str) -> ast.Module:
    return ast.parse((site / relative).read_text(), relative)


def find(tree: ast.AST, qualname: str) -> ast.AST:
    """The class or function `qualname` (e.g. Scheduler.schedule) in `tree`."""
    node = tree
    for part in qualname.split("."):
        node = next(child for child in ast.iter_child_nodes(node)
                    if isinstance(child, (ast.ClassDef, ast.FunctionDef)) and child.name == part)
    return node


def calls(node: ast.AST) -> list[str]:
    return [ast.unparse(call.func) for call in ast.walk(node) if isinstance(call, ast.Call)]


def constant_assignment(tree: ast.Module, name: str) -> ast.Assign:
    return next(node for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets))


@pytest.mark.vllm
def test_patched_files_compile(patched_site, tmp_path):
    for target in TARGETS:
        py_compile.compile(str(patched_site / target), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.vllm
def test_moriep_fp8_patch_removes_the_aiter_requirement(patched_site):
    init = find(parse(patched_site, LAYER), "FusedMoE.__init__")
    messages = [ast.unparse(node.msg) for node in ast.walk(init) if isinstance(node, ast.Assert) and node.msg]
    assert not any("Mori needs to be used with aiter" in message for message in messages)
    assert any("Mori does not support fusion shared expert" in message for message in messages)
    prepare = find(parse(patched_site, MORI_PREPARE), "MoriPrepareAndFinalize.prepare")
    assert not [node for node in ast.walk(prepare) if isinstance(node, ast.Raise)]


def env_constant(tree: ast.Module, name: str, environ: dict) -> float:
    """Evaluate the module-level `name = float(os.getenv(...))` under `environ`."""
    node = constant_assignment(tree, name)
    fake_os = types.SimpleNamespace(getenv=lambda key, default=None: environ.get(key, default))
    return eval(compile(ast.Expression(node.value), name, "eval"), {"os": fake_os})


@pytest.mark.vllm
def test_moriio_timeouts_come_from_the_environment_with_their_defaults(patched_site):
    connector, engine = parse(patched_site, CONNECTOR), parse(patched_site, ENGINE)
    assert env_constant(connector, "HANDSHAKE_TIMEOUT_S", {}) == 30
    assert env_constant(connector, "HANDSHAKE_TIMEOUT_S", {"VLLM_MORIIO_HANDSHAKE_TIMEOUT": "7"}) == 7
    assert env_constant(engine, "TRANSFER_TIMEOUT_S", {}) == 120
    assert env_constant(engine, "TRANSFER_TIMEOUT_S", {"VLLM_MORIIO_TRANSFER_TIMEOUT": "9"}) == 9
    assert env_constant(engine, "DEFER_TIMEOUT_S", {}) == 60
    assert env_constant(engine, "DEFER_TIMEOUT_S", {"VLLM_MORIIO_DEFER_TIMEOUT": "3"}) == 3
    assert env_constant(parse(patched_site, SCHEDULER), "IDLE_KV_REAP_AFTER_S", {}) == 5


@pytest.mark.vllm
def test_moriio_busy_spins_are_gone(patched_site):
    tree = parse(patched_site, CONNECTOR)
    for method in ("MoRIIOConnectorWorker.save_kv_layer", "MoRIIOConnectorWorker.start_load_kv"):
        function = find(tree, method)
        assert not [n for n in ast.walk(function) if isinstance(n, ast.While)], method
        assert "_wait_for_handshake" in calls(function), method
    wait = find(tree, "_wait_for_handshake")
    assert "time.sleep" in calls(wait)
    engine = parse(patched_site, ENGINE)
    assert "status.Wait" not in calls(find(engine, "MoRIIOWrapper.waiting_for_transfer_complete"))
    assert "self._execute_write_task_or_drop" in calls(find(engine, "MoRIIOWriter._write_worker_loop"))


@pytest.mark.vllm
def test_scheduler_asserts_are_gone_and_the_reaper_runs_each_step(patched_site):
    tree = parse(patched_site, SCHEDULER)
    update = find(tree, "Scheduler._update_from_kv_xfer_finished")
    assert not [n for n in ast.walk(update) if isinstance(n, ast.Assert)]
    assert "self._reap_idle_kv_blocks" in calls(find(tree, "Scheduler.schedule"))
    init = ast.unparse(find(tree, "Scheduler.__init__"))
    assert "self._no_running_since: float | None = None" in init


# --- behaviour, on functions taken from the patched files


def load(site: Path, relative: str, qualnames: list[str], namespace: dict) -> dict:
    """Compile the named functions or classes of a patched file into `namespace`.

    Annotations are dropped: they name types of modules that are not loaded.
    """
    tree = parse(site, relative)
    nodes = [find(tree, qualname) for qualname in qualnames]
    for node in nodes:
        for function in ast.walk(node):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                function.returns = None
                for arg in function.args.args + function.args.kwonlyargs + function.args.posonlyargs:
                    arg.annotation = None
        node.decorator_list = [d for d in node.decorator_list if ast.unparse(d) == "staticmethod"]
    body = [ast.fix_missing_locations(node) for node in nodes]
    namespace.setdefault("__name__", "patched")
    exec(compile(ast.Module(body=body, type_ignores=[]), relative, "exec"), namespace)
    return namespace


def methods(site, relative, class_name, names, namespace):
    loaded = load(site, relative, [f"{class_name}.{name}" for name in names], namespace)
    return {name: loaded[name] for name in names}


@pytest.fixture
def request_status(vllm_tree):
    """vLLM's own RequestStatus enum, taken from vllm/v1/request.py."""
    return load(vllm_tree, "vllm/v1/request.py", ["RequestStatus"], {"enum": enum})["RequestStatus"]


class FakeKVCacheManager:
    def __init__(self):
        self.freed = []

    def free(self, request):
        self.freed.append(request.request_id)


def scheduler_class(site, request_status, names=("_update_from_kv_xfer_finished", "_free_blocks")):
    """A stand-in Scheduler carrying the named methods of `site`'s scheduler.py."""
    namespace = {"RequestStatus": request_status, "logger": logging.getLogger("patched.scheduler"),
                 "IDLE_KV_REAP_AFTER_S": 5.0}

    class FakeScheduler:
        def __init__(self, requests, running=(), waiting=()):
            self.connector = None
            self.requests = {r.request_id: r for r in requests}
            self.running = list(running)
            self.waiting = list(waiting)
            self.finished_recving_kv_req_ids = set()
            self.kv_cache_manager = FakeKVCacheManager()
            self._no_running_since = None

    for name, function in methods(site, SCHEDULER, "Scheduler", list(names), namespace).items():
        setattr(FakeScheduler, name, function)
    return FakeScheduler


def fake_request(request_id, status):
    def is_finished():
        return status > type(status).PREEMPTED

    return types.SimpleNamespace(request_id=request_id, status=status, is_finished=is_finished)


def kv_output(recving=(), sending=()):
    return types.SimpleNamespace(finished_recving=set(recving), finished_sending=set(sending))


@pytest.mark.vllm
def test_scheduler_skips_unknown_and_intermediate_notifications(
        patched_site, site_for_original, request_status, caplog):
    S = request_status
    requests = [fake_request("waiting", S.WAITING_FOR_REMOTE_KVS), fake_request("running", S.RUNNING),
                fake_request("done", S.FINISHED_LENGTH_CAPPED), fake_request("sent", S.FINISHED_STOPPED)]
    output = kv_output(recving=["waiting", "running", "done", "gone"], sending=["sent", "vanished"])
    with pytest.raises(AssertionError):
        scheduler_class(site_for_original, request_status)(requests)._update_from_kv_xfer_finished(output)
    scheduler = scheduler_class(patched_site, request_status)(requests)
    with caplog.at_level(logging.WARNING, "patched.scheduler"):
        scheduler._update_from_kv_xfer_finished(output)
    assert scheduler.finished_recving_kv_req_ids == {"waiting"}
    assert sorted(scheduler.kv_cache_manager.freed) == ["done", "sent"]
    assert sorted(scheduler.requests) == ["running", "waiting"]
    logged = caplog.text
    assert "request running in state RUNNING" in logged and "request gone in state unknown" in logged
    assert "unknown request vanished" in logged


@pytest.fixture
def site_for_original(tmp_path, vllm_tree):
    return vllm_wheel.site_packages(tmp_path / "original", [SCHEDULER])


@pytest.mark.vllm
def test_reaper_frees_finished_requests_after_five_idle_seconds_even_with_waiting_requests(
        patched_site, request_status, caplog):
    S = request_status
    leaked, queued = fake_request("leaked", S.FINISHED_LENGTH_CAPPED), fake_request("queued", S.WAITING)
    running = fake_request("running", S.RUNNING)
    scheduler_type = scheduler_class(patched_site, request_status, ["_reap_idle_kv_blocks", "_free_blocks"])
    scheduler = scheduler_type([leaked, queued, running], running=[running], waiting=[queued])
    scheduler._reap_idle_kv_blocks(100.0)
    scheduler._reap_idle_kv_blocks(200.0)
    assert scheduler.kv_cache_manager.freed == []  # something was running
    scheduler.running = []
    scheduler._reap_idle_kv_blocks(300.0)  # the idle clock starts
    scheduler._reap_idle_kv_blocks(305.0)  # not more than 5 s yet
    assert scheduler.kv_cache_manager.freed == []
    with caplog.at_level(logging.WARNING, "patched.scheduler"):
        scheduler._reap_idle_kv_blocks(305.5)
    assert scheduler.kv_cache_manager.freed == ["leaked"]
    assert sorted(scheduler.requests) == ["queued", "running"]
    assert "Freed the KV blocks of 1 finished requests after 5.5 s" in caplog.text
    late = fake_request("late", S.FINISHED_ABORTED)
    scheduler.requests["late"] = late
    scheduler._reap_idle_kv_blocks(310.0)  # the clock restarted at 305.5
    assert scheduler.kv_cache_manager.freed == ["leaked"]
    scheduler._reap_idle_kv_blocks(310.6)
    assert scheduler.kv_cache_manager.freed == ["leaked", "late"]


class MoRIIOMode(enum.Enum):
    READ = "read"
    WRITE = "write"


def connector_worker(site, timeout, **state):
    namespace = {"time": time, "logger": logging.getLogger("patched.moriio"), "HANDSHAKE_TIMEOUT_S": timeout,
                 "MoRIIOMode": MoRIIOMode, "queue": queue}
    load(site, CONNECTOR, ["_wait_for_handshake"], namespace)
    found = methods(site, CONNECTOR, "MoRIIOConnectorWorker", ["save_kv_layer", "start_load_kv",
                                                               "get_engine_name_with_dp"], namespace)

    class FakeWorker:
        def __init__(self):
            self._ready_requests = queue.Queue()
            self.write_ready_flags = {}
            self.load_ready_flag = {}
            self._remote_agents = {}
            self._handshake_lock = threading.Lock()
            self._reqs_to_send = {}
            self.handshakes, self.writes, self.reads = [], [], []
            self.__dict__.update(state)

        def _background_moriio_handshake(self, req_id, remote_engine_id, meta):
            self.handshakes.append(remote_engine_id)

        def _write_blocks_for_req(self, req_id, meta, layer_name, kv_layer):
            self.writes.append(req_id)

        def _read_blocks_for_req(self, req_id, meta):
            self.reads.append(req_id)

    for name, function in found.items():
        setattr(FakeWorker, name, function)
    return FakeWorker()


def meta():
    return types.SimpleNamespace(remote_host="10.0.0.2", remote_handshake_port=6301, remote_engine_id=None)


def timed(function, *args):
    """Seconds `function` took, run in a thread so that a hang fails the test."""
    box = {}

    def target():
        started = time.monotonic()
        function(*args)
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"{function.__name__} is still waiting after 10 s"
    return box["seconds"]


@pytest.mark.vllm
def test_save_kv_layer_returns_when_there_is_nothing_to_save(patched_site):
    worker = connector_worker(patched_site, 30.0, is_producer=True, mode=MoRIIOMode.WRITE)
    metadata = types.SimpleNamespace(reqs_to_save={})
    assert timed(worker.save_kv_layer, metadata, "layer.0", None, None) < 1


@pytest.mark.vllm
def test_save_kv_layer_gives_up_a_lost_handshake_after_the_timeout(patched_site, caplog):
    worker = connector_worker(patched_site, 0.2, is_producer=True, mode=MoRIIOMode.WRITE)
    metadata = types.SimpleNamespace(reqs_to_save={"r1": meta()})
    with caplog.at_level(logging.WARNING, "patched.moriio"):
        seconds = timed(worker.save_kv_layer, metadata, "layer.0", None, None)
    assert 0.2 <= seconds < 2
    assert worker.handshakes == ["10.0.0.2:6301"] and worker.writes == []
    assert "MoRIIO handshake with 10.0.0.2:6301 not done after 0 s" in caplog.text


@pytest.mark.vllm
def test_save_kv_layer_writes_the_request_whose_handshake_finishes(patched_site):
    worker = connector_worker(patched_site, 5.0, is_producer=True, mode=MoRIIOMode.WRITE)

    def finish_handshake():
        time.sleep(0.05)
        worker._ready_requests.put(("r1", meta()))
        worker.write_ready_flags["10.0.0.2:6301"] = True

    threading.Thread(target=finish_handshake, daemon=True).start()
    seconds = timed(worker.save_kv_layer, types.SimpleNamespace(reqs_to_save={"r1": meta()}), "layer.0", None, None)
    assert seconds < 2 and worker.writes == ["r1"]


@pytest.mark.vllm
def test_start_load_kv_gives_up_a_lost_handshake_after_the_timeout(patched_site):
    worker = connector_worker(patched_site, 0.2, is_producer=False, mode=MoRIIOMode.READ)
    metadata = types.SimpleNamespace(reqs_to_recv={"r1": meta()}, reqs_to_send={"s1": 1.0})
    seconds = timed(worker.start_load_kv, metadata)
    assert 0.2 <= seconds < 2
    assert worker.reads == [] and worker._reqs_to_send == {"s1": 1.0}


class TransferError(Exception):
    pass


class FakeStatus:
    def __init__(self, polls_in_progress, succeeded=True):
        self.polls_left = polls_in_progress
        self.succeeded = succeeded

    def InProgress(self):
        self.polls_left -= 1
        return self.polls_left >= 0

    def Succeeded(self):
        return self.succeeded

    def Message(self):
        return "failed"

    def Code(self):
        return 7


def engine_namespace(**constants):
    namespace = {"time": time, "logger": logging.getLogger("patched.moriio"), "TransferError": TransferError,
                 "Empty": queue.Empty, "TRANSFER_TIMEOUT_S": 120.0, "DEFER_TIMEOUT_S": 60.0}
    namespace.update(constants)
    return namespace


def wrapper_with(site, statuses, timeout):
    found = methods(site, ENGINE, "MoRIIOWrapper", ["waiting_for_transfer_complete"],
                    engine_namespace(TRANSFER_TIMEOUT_S=timeout))
    wrapper = types.SimpleNamespace(transfer_status=list(statuses), lock=threading.Lock())
    return lambda: found["waiting_for_transfer_complete"](wrapper)


@pytest.mark.vllm
def test_transfer_wait_polls_and_raises_after_the_timeout(patched_site):
    assert timed(wrapper_with(patched_site, [FakeStatus(3), FakeStatus(2)], 5.0)) < 1
    stuck = wrapper_with(patched_site, [FakeStatus(10**9)], 0.2)
    started = time.monotonic()
    with pytest.raises(TransferError, match="not done after 0 s"):
        stuck()
    assert 0.2 <= time.monotonic() - started < 2
    with pytest.raises(TransferError, match="MoRIIO transfer failed!"):
        wrapper_with(patched_site, [FakeStatus(0, succeeded=False)], 5.0)()


class StopLoop(BaseException):
    """Ends the write worker's endless loop in a test."""


def writer_with(site, tasks, failing):
    found = methods(site, ENGINE, "MoRIIOWriter", ["_write_worker_loop", "_process_deferred_tasks",
                                                   "_execute_write_task_or_drop", "_drop_request"],
                    engine_namespace())
    wrapper = types.SimpleNamespace(lock=threading.Lock(), done_req_ids=[],
                                    done_remote_allocate_req_dict={t.request_id: object() for t in tasks})

    class FakeTaskQueue:
        def __init__(self):
            self.tasks = list(tasks)

        def get(self, timeout):
            if not self.tasks:
                raise StopLoop
            return self.tasks.pop(0)

    class FakeWriter:
        def __init__(self):
            self.worker = types.SimpleNamespace(moriio_wrapper=wrapper)
            self._write_task_q = FakeTaskQueue()
            self._deferred_tasks = []
            self.executed = []

        def _is_remote_ready(self, task):
            return task.request_id in wrapper.done_remote_allocate_req_dict

        def _execute_write_task(self, task):
            if task.request_id in failing:
                raise RuntimeError("RDMA write failed")
            self.executed.append(task.request_id)

    for name, function in found.items():
        setattr(FakeWriter, name, function)
    return FakeWriter(), wrapper


def task(request_id, age=0.0):
    return types.SimpleNamespace(request_id=request_id, enqueue_time=time.perf_counter() - age)


@pytest.mark.vllm
def test_write_worker_survives_a_failing_task(patched_site, caplog):
    writer, wrapper = writer_with(patched_site, [task("bad"), task("good")], failing={"bad"})
    with caplog.at_level(logging.ERROR, "patched.moriio"), pytest.raises(StopLoop):
        writer._write_worker_loop()
    assert writer.executed == ["good"]
    assert wrapper.done_req_ids == ["bad"]
    assert list(wrapper.done_remote_allocate_req_dict) == ["good"]
    assert "Write task of request bad failed" in caplog.text


@pytest.mark.vllm
def test_deferred_tasks_expire_after_the_defer_timeout(patched_site):
    writer, wrapper = writer_with(patched_site, [], failing=set())
    old, fresh = task("old", age=61), task("fresh", age=1)
    writer._deferred_tasks = [old, fresh]
    writer._process_deferred_tasks()
    assert writer._deferred_tasks == [fresh]
    assert wrapper.done_req_ids == ["old"]


@pytest.mark.vllm
def test_mori_dispatch_skips_quantization_when_the_experts_defer_it(patched_site, monkeypatch):
    quantized = []
    aiter = types.ModuleType("aiter")
    aiter.QuantType = types.SimpleNamespace(per_1x128="per_1x128", per_Token="per_Token")
    aiter.get_hip_quant = lambda kind: lambda a, quant_dtype: (quantized.append(kind) or ("q(a)", "scale"))
    monkeypatch.setitem(sys.modules, "aiter", aiter)
    namespace = {"mk": types.SimpleNamespace(ExpertTokensMetadata=lambda **kw: kw),
                 "current_platform": types.SimpleNamespace(fp8_dtype=lambda: "fp8")}
    prepare = methods(patched_site, MORI_PREPARE, "MoriPrepareAndFinalize", ["prepare"], namespace)["prepare"]
    dispatched = []

    def dispatch(a1, weights, scale, ids):
        dispatched.append((a1, scale))
        return a1, weights, scale, ids, 3

    layer = types.SimpleNamespace(use_fp8_dispatch=True, mori_op=types.SimpleNamespace(dispatch=dispatch))
    config = types.SimpleNamespace(is_block_quantized=True, is_per_act_token=False)
    prepare(layer, "a", "w", "ids", 8, None, False, config, defer_input_quant=True)
    prepare(layer, "a", "w", "ids", 8, None, False, config, defer_input_quant=False)
    assert dispatched == [("a", None), ("q(a)", "scale")]
    assert quantized == ["per_1x128"]


# --- refusals and bytecode


def drift(site: Path, spec, file: str, hunk_number: int, pick) -> str:
    """Change the line `pick` chooses under a hunk of `spec`; returns that line as it was."""
    hunk = dict(spec.for_applier().changes())[file][hunk_number - 1]
    line = pick(hunk)
    path = site / file
    lines = path.read_text().splitlines(keepends=True)
    at = lines.index(line, hunk.old_start - 1)
    lines[at] = line.rstrip("\n") + "  # drifted\n"
    path.write_text("".join(lines))
    return line.rstrip("\n")


def first_removed(hunk):
    return next(line for line in hunk.old if line not in hunk.new)


def last_context(hunk):
    return [line for line in hunk.old if line in hunk.new and line.strip()][-1]


@pytest.mark.vllm
@pytest.mark.parametrize("name, file, hunk_number, pick", [
    ("scheduler-read-mode", SCHEDULER, 1, first_removed),
    ("moriio-engine-timeouts", ENGINE, 2, last_context),
    ("moriep-fp8-compat", MORI_PREPARE, 1, first_removed),
])
def test_a_drifted_file_is_refused_and_nothing_changes(site, manifest, catalog, name, file, hunk_number, pick):
    line = drift(site, catalog[name], file, hunk_number, pick)
    before = snapshot(site)
    result = run_applier("apply", manifest, site)
    assert result.returncode == 1
    message = next(text for text in result.stderr.splitlines() if text.startswith(f"{PROG_PREFIX}{name}: error:"))
    assert f"does not apply to {file}: hunk #{hunk_number} (@@ " in message
    assert f"expected {line!r}, found {(line + '  # drifted')!r}" in message
    assert result.stderr.rstrip().endswith("nothing was changed")
    assert snapshot(site) == before


@pytest.mark.vllm
def test_a_wrong_vllm_version_is_refused(site, manifest):
    metadata = site / vllm_wheel.DIST_INFO / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.17.1\n", "Version: 0.18.0\n", 1))
    before = snapshot(site)
    result = run_applier("apply", manifest, site)
    assert result.returncode == 1
    assert f"{PROG_PREFIX}moriep-fp8-compat: error: wants vllm ==0.17.1, found vllm 0.18.0" in result.stderr
    assert snapshot(site) == before


@pytest.mark.vllm
def test_an_optional_patch_is_skipped_on_a_version_mismatch(site, tmp_path, vllm_specs):
    metadata = site / vllm_wheel.DIST_INFO / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.17.1\n", "Version: 0.17.2\n", 1))
    optional = [dataclasses.replace(spec, optional=True) for spec in vllm_specs]
    before = snapshot(site)
    result = run_applier("apply", write_manifest(tmp_path / "optional.manifest", optional), site)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("skipped (optional)") == len(VLLM_PATCHES)
    assert f"{PROG_PREFIX}scheduler-read-mode: skipped (optional): wants vllm ==0.17.1, found vllm 0.17.2" \
           in result.stdout
    assert snapshot(site) == before


@pytest.mark.vllm
def test_a_local_version_label_still_fits_the_pin(site, manifest):
    metadata = site / vllm_wheel.DIST_INFO / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.17.1\n", "Version: 0.17.1+rocm700\n", 1))
    assert run_applier("apply", manifest, site).returncode == 0


@pytest.mark.vllm
def test_stale_bytecode_of_patched_files_is_removed(site, manifest, tmp_path):
    cache = site / SCHEDULER.rsplit("/", 1)[0] / "__pycache__"
    stale = [cache / "scheduler.cpython-311.pyc", cache / "scheduler.cpython-312.opt-1.pyc"]
    kept = cache / "request_queue.cpython-311.pyc"
    prefix = tmp_path / "pycache-prefix"
    prefixed = prefix / os.path.abspath(site / SCHEDULER).lstrip(os.sep)
    prefixed = prefixed.parent / "scheduler.cpython-311.pyc"
    for compiled in stale + [kept, prefixed]:
        compiled.parent.mkdir(parents=True, exist_ok=True)
        py_compile.compile(str(site / SCHEDULER), cfile=str(compiled), doraise=True)
    result = run_applier("apply", manifest, site, env=dict(os.environ, PYTHONPYCACHEPREFIX=str(prefix)))
    assert result.returncode == 0, result.stderr
    assert [path.exists() for path in stale + [prefixed]] == [False, False, False]
    assert kept.exists()
