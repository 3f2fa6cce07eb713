"""The cluster configs we ship but cannot run here (no cloud, no Kubernetes, no GPU): the Ray
launcher config against Ray's own schema, the KubeRay manifests parsed, and in both the fields
that decide whether a study runs, finds its GPUs, keeps its checkpoints and stays private."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from semtune.tune.space import load_space

# ports that must never be opened to the internet: GCS, dashboard/jobs API, Ray client, MLflow
PRIVATE_PORTS = {6379, 8265, 10001, 5000}
ANYWHERE = {"0.0.0.0/0", "::/0"}


@pytest.fixture(scope="module")
def pins(repo_root: Path) -> dict[str, str]:
    """The versions pyproject.toml pins: every node must run the same."""
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    found = {}
    for dep in project["dependencies"]:
        m = re.fullmatch(r"([a-z]+)(?:\[[^\]]*\])?==([\d.]+)", dep)
        if m:
            found[m.group(1)] = m.group(2)
    found["semtune"] = project["version"]
    found["python"] = project["requires-python"].removeprefix(">=")
    return found


@pytest.fixture(scope="module")
def launcher(repo_root: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((repo_root / "cluster" / "aws-gpu.yaml").read_text()))


@pytest.fixture(scope="module")
def manifests(repo_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes object in cluster/kuberay, by kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for f in sorted((repo_root / "cluster" / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            assert doc["apiVersion"] and doc["metadata"]["name"], f
            by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def _commands(cfg: dict[str, Any]) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands")
    keys += ("worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in cfg.get(k, [])]


# -- the Ray cluster launcher config (ray up) --------------------------------------------------


def test_the_launcher_config_passes_rays_own_validation(launcher: dict[str, Any]) -> None:
    validate_config(prepare_config(copy.deepcopy(launcher)))


def test_rays_validation_rejects_a_misspelt_key(launcher: dict[str, Any]) -> None:
    # the check above is a real one: a typo in a top-level key fails Ray's schema
    broken = copy.deepcopy(launcher)
    broken["head_start_ray_command"] = broken.pop("head_start_ray_commands")
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_the_head_is_cpu_only_and_trains_nothing(launcher: dict[str, Any]) -> None:
    head = launcher["available_node_types"][launcher["head_node_type"]]
    assert "GPU" not in head["resources"] and head["resources"]["CPU"] == 0
    assert not re.match(r"(g|p)\d", head["node_config"]["InstanceType"])  # AWS GPU families
    start = " ".join(launcher["head_start_ray_commands"])
    assert "--num-cpus=0" in start


def test_the_gpu_workers_autoscale_with_several_gpus_each(launcher: dict[str, Any]) -> None:
    workers = [
        (name, t)
        for name, t in launcher["available_node_types"].items()
        if name != launcher["head_node_type"]
    ]
    assert len(workers) == 1
    _, gpu = workers[0]
    assert gpu["resources"]["GPU"] >= 2
    assert 0 == gpu["min_workers"] < gpu["max_workers"] <= launcher["max_workers"]
    # the study bucket (Tune's storage_path) is written by the workers: they carry a role
    assert gpu["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")


def test_every_node_installs_the_cuda_torch_then_semtune_at_the_pinned_versions(
    launcher: dict[str, Any], pins: dict[str, str]
) -> None:
    setup = launcher["setup_commands"]
    torch_at = next(i for i, c in enumerate(setup) if "torch==" in c)
    semtune_at = next(i for i, c in enumerate(setup) if re.search(r"pip install .*semtune", c))
    assert torch_at < semtune_at
    assert f"torch=={pins['torch']}" in setup[torch_at]
    assert "whl/cpu" not in setup[torch_at] and "+cpu" not in setup[torch_at]
    assert any("torch.cuda.is_available()" in c for c in launcher["worker_setup_commands"])
    py = pins["python"].replace(".", "")
    assert launcher["docker"]["image"] == f"rayproject/ray:{pins['ray']}-py{py}-gpu"
    # the project itself reaches every node (pip install -e of the mounted folder)
    assert launcher["file_mounts"]["~/semtune"] == "."


def test_every_ray_process_runs_with_token_auth(launcher: dict[str, Any]) -> None:
    assert launcher["file_mounts"]["~/.ray/auth_token"].startswith("~/.ray/")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in launcher[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key


def test_no_port_of_the_cluster_is_opened_to_the_internet(launcher: dict[str, Any]) -> None:
    start = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in " ".join(_commands(launcher))
    # MLflow binds the head's private address (the script refuses 0.0.0.0 anyway)
    assert any("hostname -I" in c and "start-server.sh" in c for c in _commands(launcher))


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Not, ...) as {"Ref": value}, ..."""


_CloudFormationLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: {
        suffix: (
            loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
            if isinstance(node, yaml.MappingNode)
            else loader.construct_scalar(node)
        )
    },
)


def test_the_nodes_use_the_shipped_security_group_that_opens_only_ssh_to_a_named_range(
    launcher: dict[str, Any], repo_root: Path
) -> None:
    # every node type names its group: Ray then creates none (its own admits SSH from anywhere)
    for name, node_type in launcher["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), name
    prepared = prepare_config(copy.deepcopy(launcher))
    assert "security_group" not in prepared["provider"]
    template = yaml.load(
        (repo_root / "cluster" / "aws-security-group.yaml").read_text(),
        Loader=_CloudFormationLoader,  # noqa: S506 (a subclass of SafeLoader)
    )
    groups = [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::SecurityGroup"]
    extra = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"
    ]
    ingress = [rule for g in groups for rule in g["Properties"]["SecurityGroupIngress"]]
    ingress += [r["Properties"] for r in extra]
    assert ingress
    for rule in ingress:
        if "CidrIp" in rule or "CidrIpv6" in rule:
            # from an address range: SSH only, and only the range the user names
            assert (rule["FromPort"], rule["ToPort"]) == (22, 22), rule
            assert rule.get("CidrIp") == {"Ref": "SshCidr"}, rule
        else:  # everything else only from the group itself
            assert rule["SourceSecurityGroupId"] == {"Ref": "ClusterGroup"}, rule
        ports = set(range(int(rule.get("FromPort", 0)), int(rule.get("ToPort", 65535)) + 1))
        assert not (ports & PRIVATE_PORTS and ("CidrIp" in rule or "CidrIpv6" in rule)), rule
    ssh = template["Parameters"]["SshCidr"]
    assert "Default" not in ssh  # the user names it
    assert re.fullmatch(ssh["AllowedPattern"], "203.0.113.7/32")
    assert not re.fullmatch(ssh["AllowedPattern"], "203.0.113.7")
    asserted = template["Rules"]["SshNotFromAnywhere"]["Assertions"][0]["Assert"]
    assert asserted == {"Not": [{"Equals": [{"Ref": "SshCidr"}, "0.0.0.0/0"]}]}


def test_the_walkthrough_sends_the_launcher_clusters_checkpoints_to_s3(repo_root: Path) -> None:
    # the launcher config has no storage field: the guide's submit command carries it
    guide = (repo_root / "docs" / "cluster.md").read_text()
    submits = [c for c in _shell_lines(guide) if "semtune.submit" in c and "--space" in c]
    assert any("--storage-path s3://" in c for c in submits), submits


def _shell_lines(markdown: str) -> list[str]:
    """Commands of the ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)
    return [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]


# -- KubeRay ------------------------------------------------------------------------------------


def _pod_specs(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    for group in spec["workerGroupSpecs"]:
        pods[group["groupName"]] = group["template"]["spec"]
    return pods


def _ray_clusters(manifests: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return manifests["RayJob"] + manifests["RayCluster"]


def test_the_rayjob_runs_the_search_on_the_shipped_gpu_study(
    manifests: dict[str, list[dict[str, Any]]], repo_root: Path
) -> None:
    (job,) = manifests["RayJob"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "semtune.search"]
    working_dir = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["working_dir"]
    assert working_dir == "/home/ray/semtune"  # where cluster/Dockerfile puts the project
    space = argv[argv.index("--space") + 1]
    spec = load_space(repo_root / space)  # the file is in the image: it must be valid
    assert spec.resources.gpu > 0
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_ray_pods_run_the_project_image_at_the_pinned_ray(
    manifests: dict[str, list[dict[str, Any]]], pins: dict[str, str], repo_root: Path
) -> None:
    dockerfile = (repo_root / "cluster" / "Dockerfile").read_text()
    py = pins["python"].replace(".", "")
    assert f"FROM rayproject/ray:{pins['ray']}-py{py}-gpu" in dockerfile
    torch_at = dockerfile.index(f'RUN pip install --no-cache-dir "torch=={pins["torch"]}"')
    assert torch_at < dockerfile.index("RUN pip install --no-cache-dir -e /home/ray/semtune")
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert not [r for r in runs if "whl/cpu" in r or "+cpu" in r]
    images = set()
    for obj in _ray_clusters(manifests):
        spec = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]
        assert spec["rayVersion"] == pins["ray"]
        for pod in _pod_specs(obj).values():
            images |= {c["image"] for c in pod["containers"]}
    (mlflow,) = manifests["Deployment"]
    images |= {c["image"] for c in mlflow["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1
    assert images.pop().endswith(f"/semtune:{pins['semtune']}")


def test_gpu_workers_request_gpus_and_the_head_none(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    for obj in _ray_clusters(manifests):
        pods = _pod_specs(obj)
        head = pods.pop("head")["containers"][0]["resources"]
        assert "nvidia.com/gpu" not in head.get("limits", {})
        spec = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        assert pods, "no worker group"
        for pod in pods.values():
            res = pod["containers"][0]["resources"]
            assert int(res["limits"]["nvidia.com/gpu"]) >= 1
            assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"]
            assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))


def test_the_gpu_study_fills_one_worker_of_each_config(
    manifests: dict[str, list[dict[str, Any]]], launcher: dict[str, Any], repo_root: Path
) -> None:
    spec = load_space(repo_root / "cluster" / "gamma-gpu.yaml")
    gpus_k8s = {
        int(p["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        for obj in _ray_clusters(manifests)
        for name, p in _pod_specs(obj).items()
        if name != "head"
    }
    gpus_aws = launcher["available_node_types"]["gpu_workers"]["resources"]["GPU"]
    assert gpus_k8s == {gpus_aws}
    # trials at once x GPU share = the GPUs of one worker node; their CPUs fit beside them
    assert spec.concurrency * spec.resources.gpu == gpus_aws
    assert spec.concurrency * spec.resources.cpu <= 44


def test_trial_checkpoints_go_to_a_volume_every_ray_pod_mounts(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    claims = {c["metadata"]["name"]: c for c in manifests["PersistentVolumeClaim"]}
    (job,) = manifests["RayJob"]
    argv = shlex.split(job["spec"]["entrypoint"])
    out = argv[argv.index("--out") + 1]
    for obj in _ray_clusters(manifests):
        for name, pod in _pod_specs(obj).items():
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = pod["containers"][0]["volumeMounts"]
            shared = [
                m
                for m in mounts
                if "persistentVolumeClaim" in volumes[m["name"]]
                and "ReadWriteMany"
                in claims[volumes[m["name"]]["persistentVolumeClaim"]["claimName"]]["spec"][
                    "accessModes"
                ]
            ]
            assert shared, f"{obj['metadata']['name']}/{name} mounts no shared volume"
            if obj["kind"] == "RayJob":
                # --out (Tune's storage_path by default) is on it, for the head and the workers
                assert any(out.startswith(m["mountPath"] + "/") for m in shared)


def test_the_pods_log_to_the_in_cluster_mlflow_service_over_http(
    manifests: dict[str, list[dict[str, Any]]],
) -> None:
    (job,) = manifests["RayJob"]
    argv = shlex.split(job["spec"]["entrypoint"])
    uri = argv[argv.index("--tracking-uri") + 1]
    m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", uri)
    assert m, uri
    services = {s["metadata"]["name"]: s for s in manifests["Service"]}
    svc = services[m.group(1)]
    assert int(m.group(2)) in {p["port"] for p in svc["spec"]["ports"]}
    (mlflow,) = manifests["Deployment"]
    container = mlflow["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1].endswith("mlflow/start-server.sh")
    env = {e["name"]: e for e in container["env"]}
    assert env["HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    allowed = container["args"][container["args"].index("--allowed-hosts") + 1].split(",")
    assert f"{m.group(1)}:*" in allowed  # MLflow rejects other Host headers


def test_kubernetes_objects_use_token_auth_and_expose_nothing(
    manifests: dict[str, list[dict[str, Any]]], repo_root: Path
) -> None:
    for obj in _ray_clusters(manifests):
        spec = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]
        assert spec["authOptions"]["mode"] == "token"
        assert spec["authOptions"]["secretName"]
        # the head Service KubeRay creates: ClusterIP (its default) and no Ingress
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", obj["metadata"]["name"]
        assert not head.get("enableIngress", False)
        override = head.get("headService", {}).get("spec", {})
        assert override.get("type", "ClusterIP") == "ClusterIP"
    assert "Ingress" not in manifests
    for svc in manifests["Service"]:
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    selectors = [p["spec"]["podSelector"]["matchLabels"] for p in manifests["NetworkPolicy"]]
    assert {"ray.io/is-ray-node": "yes"} in selectors


def test_no_config_we_ship_disables_ray_token_auth(repo_root: Path) -> None:
    shipped = [p for p in (repo_root / "cluster").rglob("*") if p.is_file()]
    shipped += [repo_root / "Makefile", repo_root / "mlflow" / "start-server.sh"]
    for f in shipped:
        text = f.read_text()
        assert not re.search(r"RAY_AUTH_MODE[=:\s\"']+disabled", text), f
        assert not re.search(r"mode:\s*disabled", text), f
