"""Model tier: the container recipe in deploy/ holds up without a container daemon.

No Docker or Kubernetes runs on the machines the tests run on, so what can be checked is checked:

- the Dockerfile's own install and start commands run as written, in a folder standing for the
  image's root: its ``RUN pip install`` in a fresh virtual environment (the wheel built from this
  checkout), its ``CMD`` as the non-root ``USER`` it names against a read-only copy of the model
  folder, its ``HEALTHCHECK`` against the server that started; SIGTERM drains it;
- the Kubernetes manifests parse, and their probes, ports and arguments are the server's real
  routes and options.

What is not run: ``docker build`` itself (the base image, ``COPY``'s layer semantics) and a
cluster (scheduling, the HPA's metrics). The docs say so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.serverproc import free_port
from tests.support.unprivileged import BARE_PYTHON, shared_dir, skip_unless_possible

pytestmark = pytest.mark.model
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[server]'")

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
MANIFESTS = ROOT / "deploy" / "kubernetes.yaml"


def instructions(path: Path) -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw.strip())
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def exec_form(args: str) -> list[str]:
    """A JSON-array ``CMD`` / ``HEALTHCHECK CMD`` as its argv."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def serve_argv(cmd: list[str], port: str) -> list[str]:
    """The ``gist-onnx serve ...`` arguments inside the CMD's ``sh -c "exec ..."``."""
    assert cmd[:2] == ["sh", "-c"]
    words = shlex.split(cmd[2].replace('"$PORT"', port).replace("$PORT", port))
    assert words[:3] == ["exec", "gist-onnx", "serve"]
    return words[2:]


def test_the_dockerfile_is_slim_non_root_and_serves_real_options() -> None:
    from gist_onnx.cli import build_parser

    steps = instructions(DOCKERFILE)
    kinds = [k for k, _ in steps]
    assert steps[0][0] == "FROM" and "slim" in steps[0][1]
    user = dict(steps)["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    assert "HEALTHCHECK" in kinds
    assert not any("torch" in args or "export" in args for kind, args in steps if kind == "RUN")
    args = build_parser().parse_args(serve_argv(exec_form(dict(steps)["CMD"]), "8080"))
    assert (args.command, args.variant, args.host, args.port) == ("serve", "int8", "0.0.0.0", 8080)
    assert args.served_model_name == ["gist"] and args.drain_delay > 0


def _as_user(uid: str, argv: list[str], env: dict[str, str], **kw: Any) -> Any:
    return subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
        env=env,
        cwd="/",
        **kw,
    )


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_image_installs_and_starts_as_its_user_on_a_read_only_model(
    exported: Path, tmp_path: Path
) -> None:
    skip_unless_possible()
    steps = instructions(DOCKERFILE)
    image = shared_dir()  # stands for the image's root: /tmp -> image/tmp, /app -> image/app
    try:
        for sub in ("tmp", "app"):
            (image / sub).mkdir(mode=0o755)

        def rooted(text: str) -> str:
            return text.replace("/tmp/", f"{image}/tmp/").replace("/app/", f"{image}/app/")

        # The wheel the first COPY takes, built from this checkout.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                str(ROOT),
                "--no-deps",
                "-q",
                "-w",
                str(image / "tmp"),
            ],
            check=True,
            capture_output=True,
        )
        # An earlier build left in dist/: the install line takes the newest wheel, not both.
        (image / "tmp" / "gist_onnx-0.0.1-py3-none-any.whl").write_bytes(b"an older build")
        venv = image / "venv"
        subprocess.run([str(BARE_PYTHON), "-m", "venv", str(venv)], check=True)
        path = f"{venv}/bin:/usr/bin:/bin"
        build_env = {"PATH": path, "HOME": str(tmp_path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        for kind, args in steps:
            if kind == "COPY" and "gist-onnx-model" in args:
                shutil.copytree(exported, image / "app" / "model")
            elif kind == "RUN":  # as root, as docker build runs it
                subprocess.run(["sh", "-c", rooted(args)], env=build_env, check=True, timeout=600)
        model = image / "app" / "model"
        assert not any(os.stat(p).st_mode & 0o222 for p in [model, *model.rglob("*")])

        uid = dict(steps)["USER"].split(":")[0]
        port = str(free_port())
        env = {"PATH": path, "HOME": "/nonexistent", "PORT": port}
        cmd = exec_form(dict(steps)["CMD"])
        log = tmp_path / "server.log"
        with log.open("w") as out:
            server = _as_user(uid, [*cmd[:2], rooted(cmd[2])], env, stdout=out, stderr=out)
        try:
            ready = f"http://127.0.0.1:{port}/health/ready"
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, log.read_text()[-3000:]
                try:
                    if _status(ready) == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            health = exec_form(dict(steps)["HEALTHCHECK"].split("CMD", 1)[1].strip())
            checked = _as_user(uid, health, env)
            assert checked.wait(timeout=30) == 0  # the HEALTHCHECK passes as the image's user
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/embeddings",
                data=json.dumps({"model": "gist", "input": ["hello"]}).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert len(json.loads(answer.read())["data"][0]["embedding"]) == 384
            server.send_signal(signal.SIGTERM)
            assert _status(ready) == 503  # draining (--drain-delay), then gone
            assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        finally:
            if server.poll() is None:
                server.kill()
        started = next(json.loads(t) for t in log.read_text().splitlines() if '"listening"' in t)
        assert started["model"] == ["gist"] and started["variant"] == "int8"
        # The log is JSON, line for line: nothing of ONNX Runtime's (its telemetry store, which
        # cannot be written under this user's home) breaks it.
        for line in log.read_text().splitlines():
            assert isinstance(json.loads(line), dict), line
    finally:
        shutil.rmtree(image, ignore_errors=True)


def test_the_kubernetes_manifests_use_the_servers_real_routes_and_options(tmp_path: Path) -> None:
    import yaml

    from gist_onnx.cli import build_parser

    documents = list(yaml.safe_load_all(MANIFESTS.read_text(encoding="utf-8")))
    by_kind = {d["kind"]: d for d in documents}
    assert set(by_kind) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    deployment = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    # The probes ask for routes the server has.
    steps = dict(instructions(DOCKERFILE))
    argv = serve_argv(exec_form(steps["CMD"]), "8080")
    args = build_parser().parse_args(argv)
    routes = _routes(tmp_path)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes, probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"

    # Ports: the container's, the image's PORT and the Service's target are one.
    port = container["ports"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["PORT"]) == port["containerPort"] == int(steps["ENV"].split("=")[1])
    service = by_kind["Service"]["spec"]
    assert service["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]

    # Runs as the image's non-root user; the drain fits in the grace period.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == steps["USER"].split(":")[0]
    assert pod["terminationGracePeriodSeconds"] > args.drain_delay + 30  # uvicorn's graceful 30 s
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert requests["cpu"] == limits["cpu"]  # the encoder's threads follow the CPU quota

    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]


def _routes(tmp_path: Path) -> set[str]:
    """Every path ``gist-onnx serve`` answers (from the app it builds)."""
    from starlette.routing import Route

    from gist_onnx import GistEncoder
    from gist_onnx.serve.app import create_app
    from tests.support.tiny import write_tiny_model

    folder = write_tiny_model(tmp_path / "routes")
    app = create_app(GistEncoder(folder), access_log=False)
    return {r.path for r in app.routes if isinstance(r, Route)}
