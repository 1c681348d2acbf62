"""The deployment in ``deploy/`` (issue 16, items 1-4 and 6), tested on one machine without Docker or Kubernetes.

* ``compose.yaml`` validates against the Compose Specification schema and wires PostgreSQL, the code
  server, the webserver, the daemon and the DockerRunLauncher together consistently.
* ``helm/values.yaml`` validates against the official chart's values schema: a user deployment of the
  image, ``K8sRunLauncher``, an external PostgreSQL, vendor credentials from Kubernetes Secrets.
* ``env.example``, the compose run launcher and the Helm values carry every variable the code reads.
* The image: a clean venv built by the Dockerfile's own build-stage commands (parsed from it, so a change
  to the Dockerfile changes what is tested), whose default command serves the code location over gRPC.
* A separate code server end to end: a real PostgreSQL, the image's code server, and the webserver and
  daemon loading it through ``deploy/workspace.yaml`` (a ``grpc_server`` workspace) on
  ``deploy/dagster.yaml``; a backfill launched through the webserver's GraphQL API completes under the
  daemon and its Parquet lands.

The venv is built once per test session, shared by pytest-xdist workers (75-95 s on 2 busy cores, most of
it the bytecode compile the Dockerfile asks for), from uv's local cache (offline first); the code server
runs once per worker that needs it. The image tests skip only when uv is missing; the code server's tests
need PostgreSQL (the ``pg`` fixture of ``test_postgres_instance.py``: skipped without its binaries unless
``EDU_REQUIRE_POSTGRES=1``, as in CI).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import fcntl
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import jsonschema
import pyarrow.parquet as pq
import pytest
import yaml
from dagster._core.storage.tags import GRPC_INFO_TAG

from edu_assets.sandbox.skillspass import SANDBOX_KEY, SANDBOX_SECRET, SANDBOX_TOKEN
from edu_assets_tests import test_postgres_instance
from edu_assets_tests.dagster_stack import FAST_QUEUE, DagsterStack, free_port, merge
from edu_assets_tests.helpers import materializations, requests_to

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
FIXTURES = Path(__file__).with_name("fixtures") / "deploy"
SHARED_COMPOSE_SCHEMA = Path("/work/shared/reference/deploy/compose-spec.json")
LOCATION = "edu_assets"
ENROLLMENTS = "skillspass/elearning_enrollments"  # daily, single-run backfill policy: one run for the range
DAYS = ["2026-10-01", "2026-10-02"]
SKILLSPASS_EXPORTS = "/skillspass/tp-api/exports"  # POST creates a vendor job (one per day)

pg = test_postgres_instance.pg  # the module-scoped throwaway PostgreSQL fixture, reused


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def env_example() -> dict[str, str]:
    """``NAME -> value`` of ``deploy/env.example``."""
    out = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value
    return out


# -- variables the code reads ------------------------------------------------------------------------------

VAR_PREFIXES = ("EDU_", "STELLIC_", "XPORTER_", "SKILLSPASS_", "WEBADMIT_", "AWS_")
# Read by the code but deliberately not part of a deployment's settings, and why.
NOT_DEPLOYMENT_SETTINGS = {
    "EDU_SANDBOX_URL": "points vendors without credentials at the test emulators: a deployment must not set it",
    "AWS_DEFAULT_REGION": "botocore's older name for AWS_REGION, honoured when AWS_REGION is unset",
    "AWS_ENDPOINT_URL_S3": "botocore's S3-only AWS_ENDPOINT_URL, honoured when set",
    "AWS_PROFILE": "a profile in ~/.aws (hosts only); containers use the keys",
}
CREDENTIALS = {  # per vendor: the variables that are secrets (the rest of a vendor's variables are settings)
    "stellic": {"STELLIC_TOKEN"},
    "xporter": {"XPORTER_SCHOOL_SECRETS", "XPORTER_MANAGEMENT_SECRET"},
    "skillspass": {"SKILLSPASS_KEY", "SKILLSPASS_TOKEN", "SKILLSPASS_SECRET"},
    "webadmit": {"WEBADMIT_API_KEY"},
}


def variables_read_by_code() -> set[str]:
    """Every string constant in ``edu_assets`` (not the sandbox) that names a variable of this project or AWS."""
    found: set[str] = set()
    for path in (ROOT / "edu_assets").rglob("*.py"):
        if "sandbox" in path.relative_to(ROOT / "edu_assets").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]", node.value)
                    and node.value.startswith(VAR_PREFIXES)):
                found.add(node.value)
    return found


def test_env_example_lists_every_variable_the_code_reads_and_no_other():
    read = variables_read_by_code()
    assert {"STELLIC_TOKEN", "XPORTER_RELYING_PARTY", "SKILLSPASS_SECRET", "WEBADMIT_API_KEY"} <= read  # the scan works
    listed = set(env_example())
    assert read - set(NOT_DEPLOYMENT_SETTINGS) - listed == set(), "add these to deploy/env.example"
    read_elsewhere = {"EDU_PG_HOST", "EDU_PG_PORT", "EDU_PG_DB", "EDU_PG_USER", "EDU_PG_PASSWORD",  # dagster.yaml
                      "AWS_SECRET_ACCESS_KEY"}  # botocore, with AWS_ACCESS_KEY_ID
    assert listed - read - read_elsewhere == set(), "deploy/env.example names variables nothing reads"
    assert "EDU_SANDBOX_URL" not in listed
    secrets = set().union(*CREDENTIALS.values()) | {"EDU_PG_PASSWORD", "AWS_SECRET_ACCESS_KEY"}
    assert not {name for name, value in env_example().items() if name in secrets and value and value != "change-me"}, \
        "env.example must not carry a real-looking secret"


# -- Dockerfile --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One stage of the Dockerfile, as far as the tests replay it."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # from the build context only
    copies_from: list[tuple[str, list[str], str]] = field(default_factory=list)  # (stage, sources, destination)
    runs: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str | None = None


def dockerfile_stages(path: Path = DEPLOY / "Dockerfile") -> dict[str, Stage]:
    """The stages of the Dockerfile by name: ENV, WORKDIR, COPY, RUN (without ``--mount`` flags), CMD, USER."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            stage = Stage(words[2] if len(words) > 2 and words[1].upper() == "AS" else words[0])
            stages[stage.name] = stage
        elif stage is None:
            continue
        elif keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                known = dict(stage.env)  # ENV PATH=/opt/venv/bin:$PATH expands the stage's own earlier values
                stage.env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m, known=known: known.get(m[1], m[0]), value)
        elif keyword == "WORKDIR":
            stage.workdir = rest.strip()
        elif keyword == "COPY":
            words = shlex.split(rest)
            flags = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--")}
            args = [w for w in words if not w.startswith("--")]
            if "--from" in flags:
                stage.copies_from.append((flags["--from"], args[:-1], args[-1]))
            else:
                stage.copies.append((args[:-1], args[-1]))
        elif keyword == "RUN":
            stage.runs.append(re.sub(r"^(--\S+\s+)+", "", rest.strip()))
        elif keyword == "CMD":
            stage.cmd = json.loads(rest)
        elif keyword == "USER":
            stage.user = rest.strip()
    return stages


@dataclass
class ImageVenv:
    """The venv the Dockerfile's build stage makes, built on this machine, plus the runtime stage's command."""

    venv: Path
    app_dir: Path  # the image's WORKDIR: the code server runs from here, not from the repository
    runtime: Stage
    build_seconds: float

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The runtime stage's environment with the image's paths mapped to this machine's."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env.update({k: v.replace(self.runtime.env.get("VIRTUAL_ENV", "/opt/venv"), str(self.venv))
                    for k, v in self.runtime.env.items() if k not in ("PATH", "DAGSTER_HOME", "EDU_DATA_DIR")})
        env["PATH"] = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        env.update(extra)
        return env

    def code_server_argv(self, port: int) -> list[str]:
        """The image's default command (CMD), serving on ``port`` on loopback instead of 4000 on every interface."""
        argv = list(self.runtime.cmd)
        argv[argv.index("--port") + 1] = str(port)
        argv[argv.index("--host") + 1] = "127.0.0.1"
        return [str(self.bin / argv[0]), *argv[1:]]


def _uv() -> str | None:
    found = shutil.which("uv")
    local = Path(sys.executable).with_name("uv")
    return found or (str(local) if local.exists() else None)


def build_image_venv(base: Path, uv: str) -> float:
    """Replay the Dockerfile's build stage into ``base``: copy its COPY sources into a build dir, then run its
    RUN commands with its ENV (``VIRTUAL_ENV`` moved from /opt/venv to ``base``), offline from uv's cache if
    it can. Returns the seconds it took."""
    build = dockerfile_stages()["build"]
    src, venv = base / "src", base / "opt-venv"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for sources, dest in build.copies:
        target = src / dest if not dest.startswith("/") else src / Path(dest).relative_to(build.workdir)
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, target if not dest.endswith("/") else target / origin.name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(build.env)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"  # the Dockerfile copies uv onto PATH
    started = time.monotonic()
    for offline in ("1", "0"):  # uv's cache first; PyPI only for what the cache lacks
        shutil.rmtree(venv, ignore_errors=True)
        failed = None
        for command in build.runs:
            done = subprocess.run(["/bin/sh", "-ec", command], cwd=src, env={**env, "UV_OFFLINE": offline},
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                failed = f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
                break
        if failed is None:
            break
    assert failed is None, f"the Dockerfile's build stage failed:\n{failed}"
    return time.monotonic() - started


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> ImageVenv:
    """The image's venv, built once per test session: with pytest-xdist, the first worker that needs it builds
    it in the session's shared temp dir while the others wait on a lock, then all use it."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed (pip install uv): the image's build stage runs uv")
    stages = dockerfile_stages()
    build, runtime = stages["build"], stages["runtime"]
    assert (runtime.copies_from and runtime.copies_from[0][0] == "build"
            and runtime.copies_from[0][1] == [build.env["VIRTUAL_ENV"]]), "the runtime stage copies the build's venv"
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this session's temp dir, common to its workers
    base, app = shared / "deploy-image", tmp_path_factory.mktemp("image-app")
    with open(shared / "deploy-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        built = base / "built.json"
        if not built.exists():
            built.parent.mkdir(parents=True, exist_ok=True)
            built.write_text(json.dumps({"seconds": build_image_venv(base, uv)}))
    return ImageVenv(base / "opt-venv", app, runtime, json.loads(built.read_text())["seconds"])


def test_dockerfile_is_multi_stage_non_root_and_serves_the_code_location_by_default():
    stages = dockerfile_stages()
    build, runtime = stages["build"], stages["runtime"]
    assert any(src == "/uv" for _, sources, _ in build.copies_from for src in sources)  # uv from its image
    assert any("uv pip install" in r and ".[deploy]" in r for r in build.runs)
    assert runtime.user is not None and runtime.user.split(":")[0] not in ("0", "root")
    assert runtime.cmd[:3] == ["dagster", "code-server", "start"]
    assert runtime.cmd[runtime.cmd.index("--module-name") + 1] == "edu_assets.definitions"
    assert runtime.cmd[runtime.cmd.index("--location-name") + 1] == LOCATION
    assert runtime.env["PATH"].startswith(build.env["VIRTUAL_ENV"] + "/bin")


def test_docker_build_context_sends_only_what_the_build_copies():
    """``deploy/Dockerfile.dockerignore`` excludes everything (the venv, data, ``.env`` files) but the build
    stage's COPY sources."""
    rules = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    copied = {source.rstrip("/") for sources, _ in dockerfile_stages()["build"].copies for source in sources}
    assert copied == allowed, "keep deploy/Dockerfile.dockerignore's exceptions equal to the build's COPY sources"


def _wait(probe: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"waiting for {what}: the process exited ({proc.returncode})\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waiting for {what}: not within {timeout:.0f}s\n{tail}")
        time.sleep(0.5)


def _serving(port: int) -> bool:
    """The gRPC health check, from this process (cheap to poll; the CLI costs a Python start each time)."""
    from dagster._grpc.client import DagsterGrpcClient

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the RPC error while the server is not up
        return DagsterGrpcClient(port=port, host="127.0.0.1").health_check_query() == "SERVING"


def _healthy(image: ImageVenv, port: int) -> bool:
    """``dagster api grpc-health-check``, the compose file's health check, from the image's venv."""
    check = [str(image.bin / "dagster"), "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"]
    return subprocess.run(check, env=image.env(), capture_output=True, timeout=60).returncode == 0


@dataclass
class CodeServer:
    """The image's code server, as the deployment runs it: its own process, its instance config, its settings."""

    home: Path  # DAGSTER_HOME: deploy/dagster.yaml (PostgreSQL) plus FAST_QUEUE
    data: Path  # EDU_DATA_DIR: the lake, the catalog, work files
    env: dict[str, str]  # the environment of the deployment's processes (code server, webserver, daemon)
    port: int


@pytest.fixture(scope="module")
def code_server(image_venv: ImageVenv, pg: Any, sandbox_server: Any,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[CodeServer]:
    """The image's default command on a free port, until it answers the compose file's health check.

    Configured as a deployment is, by variables only: the instance's database, and one vendor, SkillsPass,
    by its credentials and base URL (pointing at the sandbox). ``EDU_SANDBOX_URL`` is unset, as in a
    deployment, so the other vendors are not configured and their sensors skip."""
    base = tmp_path_factory.mktemp("deployment")
    home, data = base / "dagster_home", base / "data"
    home.mkdir()
    # FAST_QUEUE: the run queue is read every second instead of every 5 (when runs leave it, not which may)
    config = merge(load_yaml(DEPLOY / "dagster.yaml"), FAST_QUEUE)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    database = {"EDU_PG_HOST": pg.host, "EDU_PG_PORT": str(pg.port), "EDU_PG_DB": pg.db, "EDU_PG_USER": pg.user,
                "EDU_PG_PASSWORD": pg.password}
    unset = {name: "" for name in variables_read_by_code() if name.startswith(("STELLIC_", "XPORTER_", "WEBADMIT_"))}
    env = image_venv.env(
        **database, **unset, DAGSTER_HOME=str(home), EDU_DATA_DIR=str(data), EDU_SANDBOX_URL="",
        SKILLSPASS_KEY=SANDBOX_KEY, SKILLSPASS_TOKEN=SANDBOX_TOKEN, SKILLSPASS_SECRET=SANDBOX_SECRET,
        SKILLSPASS_BASE_URL=f"{sandbox_server.url}/skillspass",
        EDU_EXPORT_POLL_MAX_SECONDS="1",  # a finished vendor job is noticed within a second
    )
    port, log = free_port(), home / "code-server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(image_venv.code_server_argv(port), cwd=image_venv.app_dir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: _serving(port), 180, "the image's code server to serve gRPC", proc, log)
        assert _healthy(image_venv, port), "the compose file's health check fails against a serving code server"
        yield CodeServer(home, data, env, port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


IMAGE_PROBE = """
import json, os, sys, yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster._grpc.client import DagsterGrpcClient
from dagster._serdes import ConfigurableClassData, deserialize_value

port, instance_yaml = int(sys.argv[1]), sys.argv[2]
listed = deserialize_value(DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories())
config = process_config(dagster_instance_config_schema(), yaml.safe_load(open(instance_yaml)))
assert config.success, config.errors
launcher = config.value["run_launcher"]
launcher = ConfigurableClassData(launcher["module"], launcher["class"], yaml.safe_dump(launcher["config"])).rehydrate(object)
import dagster_k8s, dagster_postgres  # noqa: the Helm deployment's run launcher and every instance's storage
print(json.dumps({"repositories": sorted(s.repository_name for s in listed.repository_symbols),
                  "module": listed.repository_code_pointer_dict["__repository__"].module,
                  "executable": listed.executable_path, "launcher": type(launcher).__name__}))
"""


@pytest.mark.timeout(900)  # the first test to need the image builds its venv (longer with a cold uv cache)
def test_image_venv_serves_the_code_location_and_runs_the_webserver_and_daemon(image_venv, code_server):
    """The image's CMD serves ``edu_assets.definitions`` from the venv (not the repository); the same venv has
    the webserver, the daemon, the container run launchers and PostgreSQL storage."""
    env = code_server.env
    probe = subprocess.run([str(image_venv.bin / "python"), "-c", IMAGE_PROBE, str(code_server.port),
                            str(DEPLOY / "dagster.docker.yaml")],
                           cwd=image_venv.app_dir, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert got["repositories"] == ["__repository__"]
    assert got["module"] == "edu_assets.definitions"
    assert Path(got["executable"]).parent == image_venv.bin  # runs start from the image's interpreter
    print(f"image venv built from the Dockerfile's build stage in {image_venv.build_seconds:.0f}s")
    assert got["launcher"] == "DockerRunLauncher"
    for tool in ("dagster-webserver", "dagster-daemon"):
        assert (image_venv.bin / tool).exists(), tool
    installed = subprocess.run([str(image_venv.bin / "python"), "-c", "import edu_assets; print(edu_assets.__file__)"],
                               cwd=image_venv.app_dir, env=env, capture_output=True, text=True, timeout=60)
    assert str(image_venv.venv) in installed.stdout, installed  # the installed copy, not the checkout


# -- Compose ------------------------------------------------------------------------------------------------


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((FIXTURES / "compose-spec.json").read_text())
    return jsonschema.Draft7Validator(schema)  # its $schema says draft-07


def test_compose_schema_fixture_is_the_reference_copy():
    if not SHARED_COMPOSE_SCHEMA.exists():
        pytest.skip(f"{SHARED_COMPOSE_SCHEMA} is not on this machine; the fixture copy is used as is")
    assert (FIXTURES / "compose-spec.json").read_bytes() == SHARED_COMPOSE_SCHEMA.read_bytes()


def test_compose_file_is_valid_and_wires_the_services_together():
    compose = load_yaml(DEPLOY / "compose.yaml")
    errors = sorted(compose_validator().iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)

    services = compose["services"]
    assert set(services) >= {"postgres", "user-code", "webserver", "daemon"}
    assert services["postgres"]["image"].startswith("postgres:")
    cmd = dockerfile_stages()["runtime"].cmd
    code = services["user-code"]
    assert "command" not in code, "the code server is the image's default command"
    assert code["build"]["dockerfile"] == "deploy/Dockerfile"
    assert str(cmd[cmd.index("--port") + 1]) in " ".join(code["healthcheck"]["test"])
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[name]["command"]
        assert services[name]["depends_on"]["user-code"]["condition"] == "service_healthy"
        assert services[name]["image"] == code["image"], "one image for every service"

    # the workspace names the code server's service, port and location name
    (entry,) = load_yaml(DEPLOY / "workspace.yaml")["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == "user-code"
    assert str(server["port"]) == cmd[cmd.index("--port") + 1]
    assert server["location_name"] == cmd[cmd.index("--location-name") + 1]
    assert compose["configs"]["dagster-workspace"]["file"] == "./workspace.yaml"
    assert compose["configs"]["dagster-instance"]["file"] == "./dagster.docker.yaml"

    # the run launcher: a container per run, on the compose network, with the data volume and every setting
    launcher = load_yaml(DEPLOY / "dagster.docker.yaml")["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    assert launcher["config"]["network"] == compose["networks"]["edu"]["name"]
    volume = compose["volumes"]["edu-data"]["name"]
    assert f"{volume}:/data" in launcher["config"]["container_kwargs"]["volumes"]
    assert set(launcher["config"]["env_vars"]) == set(env_example()), \
        "the run containers get exactly deploy/env.example's variables"


def test_every_variable_compose_interpolates_is_documented_in_env_example():
    used = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    assert {"EDU_PG_PASSWORD", "EDU_IMAGE"} <= used
    documented = set(re.findall(r"^#? ?(\w+)=", (DEPLOY / "env.example").read_text(), re.MULTILINE))
    assert used - documented == set(), "document these in deploy/env.example"


def test_compose_validation_catches_a_mistake():
    """The schema is really applied: a misspelt key and a wrong type each fail validation."""
    compose = load_yaml(DEPLOY / "compose.yaml")
    broken = copy.deepcopy(compose)
    broken["services"]["daemon"]["comand"] = broken["services"]["daemon"].pop("command")
    assert any("comand" in e.message for e in compose_validator().iter_errors(broken))
    broken = copy.deepcopy(compose)
    broken["services"]["webserver"]["ports"] = "3000:3000"  # a list of ports, not one string
    assert list(compose_validator().iter_errors(broken))


def test_docker_instance_differs_from_deploy_instance_only_in_its_run_launcher():
    docker, shipped = load_yaml(DEPLOY / "dagster.docker.yaml"), load_yaml(DEPLOY / "dagster.yaml")
    assert {k: v for k, v in docker.items() if k != "run_launcher"} == \
        {k: v for k, v in shipped.items() if k != "run_launcher"}


# -- Helm ---------------------------------------------------------------------------------------------------


def _without(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return {k: _without(v, key) for k, v in node.items() if k != key}
    if isinstance(node, list):
        return [_without(v, key) for v in node]
    return node


def _stub_kubernetes_refs(node: Any) -> Any:
    """The schema with every reference to kubernetesjsonschema.dev stubbed as ``{}`` (no network here).

    Under draft 7 a ``$ref`` makes its siblings ignored, so a schema holding one becomes ``{}`` whole."""
    if isinstance(node, dict):
        if str(node.get("$ref", "")).startswith("http"):
            return {}
        return {k: _stub_kubernetes_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_stub_kubernetes_refs(v) for v in node]
    return node


def helm_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    return jsonschema.Draft7Validator(_stub_kubernetes_refs(schema))


def helm_errors(values: dict[str, Any]) -> list[str]:
    """Errors of ``values`` against the chart's schema, as ``helm install`` checks them.

    Helm validates the user's values merged into the chart's defaults (maps merge, lists replace), so a
    key the schema requires is there even when the user's file leaves it out: the schema is applied
    without ``required``, except to the items of the lists the file replaces (the user deployments)."""
    schema = json.loads((FIXTURES / "dagster-helm-values.schema.json").read_text())
    errors = list(helm_validator(_without(schema, "required")).iter_errors(values))
    deployment = {**schema["definitions"]["UserDeployment"], "definitions": schema["definitions"]}
    for item in values.get("dagster-user-deployments", {}).get("deployments", []):
        errors += list(helm_validator(deployment).iter_errors(item))
    return [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_helm_values_are_valid_for_the_chart():
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    assert helm_errors(values) == []


def test_helm_validation_catches_a_mistake():
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    broken = copy.deepcopy(values)
    broken["runLauncher"]["config"]["k8sRunLauncher"]["imagePulPolicy"] = "Always"
    assert any("imagePulPolicy" in e for e in helm_errors(broken))
    broken = copy.deepcopy(values)
    del broken["dagster-user-deployments"]["deployments"][0]["port"]
    assert any("'port' is a required property" in e for e in helm_errors(broken))
    broken = copy.deepcopy(values)
    broken["runLauncher"]["type"] = "DockerRunLauncher"
    assert helm_errors(broken)


def _env_list(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in entries}


def test_helm_values_deploy_the_image_with_k8s_runs_external_postgres_and_vendor_secrets():
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    cmd = dockerfile_stages()["runtime"].cmd
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    # the image's CMD as the chart runs it, but for the location's name: the chart's workspace names the
    # location (and the code server's Service) after the deployment, which must be a DNS-1123 label
    module = cmd.index("--module-name")
    assert deployment["codeServerArgs"] == cmd[module:module + 2]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", deployment["name"]), deployment["name"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # runs get its env, Secrets and volumes
    image = deployment["image"]["repository"]
    assert values["dagsterWebserver"]["image"]["repository"] == image
    assert values["dagsterDaemon"]["image"]["repository"] == image
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]

    # the instance's behaviour is deploy/dagster.yaml's: the same queue, pools and run monitoring
    shipped = load_yaml(DEPLOY / "dagster.yaml")
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    assert (coordinator["module"], coordinator["class"]) == \
        (shipped["run_coordinator"]["module"], shipped["run_coordinator"]["class"])
    assert values["additionalInstanceConfig"]["concurrency"] == shipped["concurrency"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["pollIntervalSeconds"] == shipped["run_monitoring"]["poll_interval_seconds"]

    # every setting of env.example reaches the code server and its runs; credentials only from Secrets
    env = _env_list(deployment["env"])
    chart_sets = {"EDU_PG_HOST", "EDU_PG_PORT", "EDU_PG_DB", "EDU_PG_USER", "EDU_PG_PASSWORD"}  # the chart's own
    assert set(env_example()) - chart_sets - set(env) == set(), "add these to the user deployment's env"
    for vendor, names in CREDENTIALS.items():
        for name in names:
            ref = env[name].get("valueFrom", {}).get("secretKeyRef")
            assert ref and ref["key"] == name and ref["name"] == f"edu-{vendor}", (vendor, name, env[name])
            assert "value" not in env[name]
    assert "valueFrom" in env["AWS_SECRET_ACCESS_KEY"]


# -- a separate code server, end to end ----------------------------------------------------------------------


class DeployStack(DagsterStack):
    """A :class:`DagsterStack` run the way ``deploy/`` runs it: the webserver and the daemon from the image's
    venv, loading the :func:`code_server` through ``deploy/workspace.yaml`` (host and port pointed at it), on
    its instance (``deploy/dagster.yaml``, PostgreSQL) and with its environment."""

    def __init__(self, tmp_path: Path, image: ImageVenv, server: CodeServer):
        super().__init__(tmp_path, location=LOCATION)
        self.image, self.home, self.env = image, server.home, dict(server.env)
        self.config = load_yaml(server.home / "dagster.yaml")
        workspace = load_yaml(DEPLOY / "workspace.yaml")
        workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=server.port)
        self.workspace.write_text(yaml.safe_dump(workspace))

    def _start(self, name: str, argv: list[str]) -> None:
        assert name not in self._procs, f"{name} already started"
        with open(self.home / f"{name}.log", "ab") as log:  # from the image's WORKDIR, not the checkout
            self._procs[name] = subprocess.Popen(argv, cwd=self.image.app_dir, env=self.env, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)

    def start_daemon(self) -> None:
        self._start("daemon", [str(self.image.bin / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def start_webserver(self, timeout: float = 120) -> None:
        self.port = free_port()
        self._start("webserver", [str(self.image.bin / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port),
                                  "-w", str(self.workspace)])
        self.wait_for(self._location_loaded, timeout, "the webserver to load the code location")

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name} log (last {chars} chars) ---\n{self.log(name)[-chars:]}"
                         for name in ("code-server", "daemon", "webserver") if self.log(name))


@pytest.mark.timeout(900)
def test_backfill_through_the_webserver_completes_under_the_daemon_on_a_separate_code_server(
    image_venv, code_server, tmp_path, sandbox, monkeypatch
):
    """The webserver and the daemon reach the code location only over gRPC; the backfill's run is started by
    the code server (from the image's interpreter) and lands its Parquet in the deployment's lake."""
    for name in ("EDU_PG_HOST", "EDU_PG_PORT", "EDU_PG_DB", "EDU_PG_USER", "EDU_PG_PASSWORD"):
        monkeypatch.setenv(name, code_server.env[name])  # the test's own handle on the instance reads them
    with DeployStack(tmp_path, image_venv, code_server) as stack:
        stack.start_webserver()
        backfill = stack.launch_asset_backfill(ENROLLMENTS, DAYS)
        stack.start_daemon()  # after the backfill exists: its first iteration picks it up at once
        status = stack.wait_for(lambda: _ended(stack, backfill), 240, "the backfill to end")
        assert status == "COMPLETED_SUCCESS", (stack.backfill(backfill), stack.log_tail())

        instance = stack.instance
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill}))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS], runs  # single-run policy: one run
        (run,) = runs
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == LOCATION  # launched on the grpc_server location
        grpc = json.loads(run.tags[GRPC_INFO_TAG])  # the launcher asked the code server to start the run
        assert (grpc["host"], grpc.get("port")) == ("127.0.0.1", code_server.port), grpc
        for day in DAYS:
            assert len(materializations(instance, ENROLLMENTS, day)) == 1, day
        files = sorted((code_server.data / "lake" / "skillspass" / "elearning_enrollments").rglob("*.parquet"))
        assert {day for day in DAYS if any(day in str(f) for f in files)} == set(DAYS), files
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) > 0
        assert len([r for r in requests_to(sandbox, SKILLSPASS_EXPORTS) if r["method"] == "POST"]) == len(DAYS)


def _ended(stack: DagsterStack, backfill_id: str) -> str | None:
    status = stack.backfill(backfill_id)["status"]
    return None if status == "REQUESTED" else status
