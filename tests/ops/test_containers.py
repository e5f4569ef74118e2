"""The image, compose.yaml and deploy/k8s run exactly the commands of deploy/Procfile, role by role.

Each Procfile line runs its command under deploy/supervise.py (which restarts
it); containers run the command itself, since Docker and Kubernetes restart them.

No Docker daemon here: the files are parsed and compared. A Procfile
`${VARIABLE}` (a port, a bind address, a path) matches whatever concrete
value or `$(VARIABLE)` reference the container files put in its place; every
other argument must be identical.
"""

import json
import re
import shlex

import yaml

from tests.live import ROOT
from tests.ops.test_k8s import by_kind, rendered

ROLES = ("nginx", "web", "ws", "worker", "beat")
SUPERVISOR = [".venv/bin/python", "deploy/supervise.py"]
VARIABLE = re.compile(r"\$\{[^}]+\}")


def procfile_lines() -> dict[str, list[str]]:
    commands = {}
    for line in (ROOT / "deploy/Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = shlex.split(command)
    return commands


def procfile() -> dict[str, list[str]]:
    """Each Procfile process's command, without the supervisor in front of it."""
    return {name: argv[len(SUPERVISOR) :] for name, argv in procfile_lines().items()}


def test_every_procfile_process_runs_under_the_supervisor():
    for name, argv in procfile_lines().items():
        assert argv[: len(SUPERVISOR)] == SUPERVISOR, name


def same_command(procfile_argv: list[str], argv: list[str]) -> bool:
    return len(procfile_argv) == len(argv) and all(
        re.fullmatch(_pattern(expected), actual) for expected, actual in zip(procfile_argv, argv, strict=True)
    )


def _pattern(token: str) -> str:
    """The token as a regular expression: literal text, with each ${VARIABLE} matching any value."""
    parts, position = [], 0
    for match in VARIABLE.finditer(token):
        parts += [re.escape(token[position : match.start()]), ".+"]
        position = match.end()
    return "".join([*parts, re.escape(token[position:])])


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def dockerfile_instructions(name: str) -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(f"{name} ")]


def test_the_procfile_has_every_role_with_nginx_first():
    # honcho gives the first process the base PORT: nginx must be it.
    assert list(procfile())[: len(ROLES)] == list(ROLES)


def test_the_image_runs_the_web_role_by_default():
    [command] = dockerfile_instructions("CMD")
    assert same_command(procfile()["web"], json.loads(command))


def test_compose_runs_each_role_with_its_procfile_command():
    services = compose()["services"]
    for role in ROLES:
        assert same_command(procfile()[role], services[role]["command"]), (role, services[role]["command"])


def test_kubernetes_runs_each_role_with_its_procfile_command():
    deployments = by_kind(rendered("overlays/production"), "Deployment")
    for role in ("web", "ws", "worker", "beat"):
        container = deployments[role]["spec"]["template"]["spec"]["containers"][0]
        assert same_command(procfile()[role], container["command"] + container.get("args", [])), role


def test_compose_and_the_kubernetes_job_migrate_the_same_way():
    job = by_kind(rendered("overlays/production"), "Job")["migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == compose()["services"]["migrate"]["command"]


def test_a_different_argument_does_not_match():
    web = procfile()["web"]
    assert not same_command(web, [*web[:-1], "xiaoxiang.asgi"])
    ws = procfile()["ws"]
    assert not same_command(ws, [*ws[:-1], "xiaoxiang.wsgi:application"])


def test_the_image_is_multi_stage_non_root_and_collects_static_files_at_build():
    stages = dockerfile_instructions("FROM")
    assert [stage.split()[0] for stage in stages] == ["python:3.11-slim-bookworm"] * 2
    [user] = dockerfile_instructions("USER")
    assert not user.startswith(("0", "root"))
    runs = " ".join(dockerfile_instructions("RUN"))
    assert "manage.py collectstatic --noinput" in runs
    final_stage = (ROOT / "Dockerfile").read_text().split("AS runtime", 1)[1]
    assert not any(tool in final_stage for tool in ("build-essential", "gcc", "pip install"))
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "db.sqlite3"} <= set(ignored)


def test_compose_has_the_whole_topology_with_health_checks_and_named_volumes():
    config = compose()
    services = config["services"]
    assert {"postgres", "redis", "nginx", "web", "ws", "worker", "beat", "prometheus", "grafana"} <= set(services)
    for name in ("postgres", "redis", "nginx", "web", "ws", "worker", "prometheus", "grafana"):
        assert "test" in services[name]["healthcheck"], name
    assert set(config["volumes"]) == {"postgres_data", "redis_data", "prometheus_data", "grafana_data"}
    assert services["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_every_role_is_restarted_when_it_dies():
    """What deploy/supervise.py does for the Procfile, the container runtimes do for the containers."""
    services = compose()["services"]
    for role in ROLES:
        assert services[role]["restart"] == "unless-stopped", role
    deployments = by_kind(rendered("overlays/production"), "Deployment")
    for role in ("web", "ws", "worker", "beat"):
        pod = deployments[role]["spec"]["template"]["spec"]
        assert pod.get("restartPolicy", "Always") == "Always", role
    # A process that hangs instead of exiting is restarted by its liveness probe (beat has none: it exits).
    for role in ("web", "ws", "worker"):
        assert "livenessProbe" in deployments[role]["spec"]["template"]["spec"]["containers"][0], role
