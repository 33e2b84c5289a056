"""What ships to production: the Bento, the one image, and the Kubernetes manifests that run it.

`bentoml build` runs for real (offline: the requirements are already pinned); the manifests are checked
against the Kubernetes JSON schemas shipped by `kubernetes-validate`; the Dockerfile by hadolint (a
static binary from the dev group). Building the image needs a Docker daemon, which CI does not have.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # validated against an older API too: what clusters in service still run
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _resources() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def _containers(resource: dict) -> list[dict]:
    spec = resource.get("spec", {})
    if resource["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", [])


@pytest.mark.parametrize("version", [kubernetes_validate.latest_version(), KUBERNETES_VERSION])
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path, version):
    for resource in yaml.safe_load_all(path.read_text()):
        # strict: an unknown (misspelt) field is an error, not silently dropped by the API server
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_manifests_hold_a_deployment_service_hpa_and_the_retrain_cronjob():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in _resources()}
    assert {
        ("Deployment", "persona-scoring"),
        ("Service", "persona-scoring"),
        ("HorizontalPodAutoscaler", "persona-scoring"),
        ("CronJob", "persona-retrain"),
        ("CronJob", "persona-refresh"),
        ("PersistentVolumeClaim", "persona-data"),
        ("ConfigMap", "persona-config"),
    } <= kinds
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def test_everything_runs_from_one_image_whose_entrypoint_is_the_cli():
    from persona.cli import cli

    images = set()
    for path, resource in _resources():
        for container in _containers(resource):
            images.add(container["image"])
            assert "command" not in container, f"{path.name}: keep the image's entrypoint (persona)"
            # each container runs a real `persona` command
            name = container["args"][0]
            assert isinstance(cli.get_command(click.Context(cli), name), click.Command), (path.name, name)
    assert len(images) == 1, images
    (image,) = images
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == [image.rsplit(":", 1)[0]]


def test_the_deployment_wires_probes_port_and_the_hpa_to_the_service():
    docs = {(doc["kind"]): doc for _, doc in _resources()}
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    (container,) = _containers(deployment)
    assert container["args"][:1] == ["serve"]
    port = int(container["args"][container["args"].index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert any(e["name"] == "PERSONA_API_KEYS" and "secretKeyRef" in e["valueFrom"] for e in container["env"])
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    for _, resource in _resources():
        spec = resource.get("spec", {})
        pod = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if pod:
            assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_cronjobs_follow_the_configured_schedules():
    from configs.settings import load_settings

    crons = {doc["metadata"]["name"]: doc for _, doc in _resources() if doc["kind"] == "CronJob"}
    settings = load_settings()
    assert set(crons) == {"persona-retrain", "persona-refresh"}
    assert crons["persona-retrain"]["spec"]["schedule"] == settings.schedule.retrain
    assert crons["persona-refresh"]["spec"]["schedule"] == settings.schedule.refresh
    assert all(cron["spec"]["concurrencyPolicy"] == "Forbid" for cron in crons.values())


# ------------------------------------------------------------------------------------------ Dockerfile
def test_the_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_is_multi_stage_non_root_uv_locked_and_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "uv sync --frozen --no-dev" in text
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
        "wheel"
    ]["packages"]
    copied = set(re.findall(r"^COPY (\S+)/ ", text, re.M))
    assert set(packages) | {"feature_repo"} <= copied, set(packages) - copied
    assert re.search(r'^ENTRYPOINT \["persona"\]', text, re.M)


# ------------------------------------------------------------------------------------------ BentoML
def _uv() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    return ["python3", "-m", "uv"]  # scripts/bootstrap.sh installs it this way when missing


def test_the_bento_requirements_are_the_lock_file_exported():
    done = subprocess.run(
        [
            *_uv(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--no-annotate",
            "--no-header",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    committed = (ROOT / "deploy" / "requirements.txt").read_text()
    assert committed == done.stdout, "refresh it: the uv export command in bentofile.yaml"


def test_bentoml_build_accepts_the_bentofile(tmp_path):
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PERSONA_DATA_DIR": str(tmp_path / "data"),
    }
    bentoml = Path(sys.executable).with_name("bentoml")
    done = subprocess.run(
        [str(bentoml), "build", str(ROOT), "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    bento = tmp_path / "bentoml" / "bentos" / name / version
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["service"] == "serving.service:PersonaService"
    routes = {r["route"] for r in manifest["schema"]["routes"]}
    assert {"/v1/score", "/v1/churn"} <= routes
    src = bento / "src"
    for needed in ("serving/service.py", "artifacts/registry.py", "configs/base.yaml", "configs/tags.yaml"):
        assert (src / needed).is_file(), needed
    assert (src / "feature_repo" / "feature_store.yaml").is_file()
    assert not (src / "training").exists(), "serving does not need the training package"
    assert not (src / "data").exists() and not (src / "tests").exists()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "lightgbm==" in requirements and "feast==" in requirements


# ------------------------------------------------------------------------------ the image's build steps
def _build_stage(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's first stage, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    steps: list[tuple[str, str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction == "FROM" and any(i == "FROM" for i, _ in steps):
            break  # the runtime stage copies the build stage's /app as it is
        steps.append((instruction, args.strip()))
    return steps


@pytest.mark.slow
def test_the_dockerfile_build_steps_install_a_working_persona(tmp_path):
    """No Docker daemon here, so the image itself is not built: its build stage is replayed instead. The
    files it COPYs go to a fresh /app stand-in, its `uv sync` commands run there in its order with its
    environment (the locked, no-dev environment, offline from uv's cache), and the result runs
    `persona --version` and imports every shipped package: a package the Dockerfile forgets to COPY, or a
    lock that does not match pyproject, fails here."""
    app = tmp_path / "app"
    app.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PERSONA_"))}
    ran = []
    for instruction, args in _build_stage((ROOT / "Dockerfile").read_text()):
        if instruction == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                env[key] = value.replace("/app", str(app))
        elif instruction == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            for source in sources:
                src = ROOT / source.rstrip("/")
                if src.is_dir():
                    shutil.copytree(src, app / src.name, ignore=shutil.ignore_patterns("__pycache__", "data"))
                else:
                    shutil.copy2(src, app / src.name)
        elif instruction == "RUN" and "uv sync" in args:
            command = args[args.index("uv sync") :].split()
            # Link from the cache instead of copying and skip bytecode: neither changes what is installed.
            run_env = {**env, "UV_LINK_MODE": "hardlink", "UV_COMPILE_BYTECODE": "0"}
            done = subprocess.run(
                [*_uv(), *command[1:], "--offline"], cwd=app, env=run_env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{' '.join(command)}: {done.stderr[-3000:]}"
            ran.append(" ".join(command))
    assert ran == ["uv sync --frozen --no-dev --no-install-project", "uv sync --frozen --no-dev"]
    venv = Path(env["UV_PROJECT_ENVIRONMENT"])
    assert venv.is_relative_to(app)
    elsewhere = tmp_path / "cwd"  # not the copy's folder: imports must come from the installed project
    elsewhere.mkdir()
    run_env = {**env, "PERSONA_DATA_DIR": str(tmp_path / "data")}
    version = subprocess.run(
        [str(venv / "bin" / "persona"), "--version"],
        cwd=elsewhere,
        env=run_env,
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0, version.stderr[-2000:]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] in version.stdout
    packages = ["serving.service", "training.retrain", "training.jobs", "features.build", "persona.cli"]
    imported = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import {', '.join(packages)}; import serving.service as s; print(s.__file__)",
        ],
        cwd=elsewhere,
        env=run_env,
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert Path(imported.stdout.strip()).is_relative_to(app)  # the copied code, not the repository
    dev = subprocess.run([str(venv / "bin" / "python"), "-c", "import pytest"], capture_output=True)
    assert dev.returncode != 0, "the image's environment must not hold the dev group"
