"""The deployment templates in infra/: each parses, has the fields its system requires, names files that
exist in this repository, passes arguments the named job's own parser accepts, and agrees with the
installed Spark. The Docker image is not built here (no engine); its Dockerfile is checked as text."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pyspark
import pytest
import torch
import yaml

from tokenmill.jobs import cli

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S = {path.name: yaml.safe_load(path.read_text()) for path in sorted((INFRA / "k8s").glob("*.yaml"))}
STEPS = json.loads((INFRA / "emr" / "step.json").read_text())
SERVERLESS = json.loads((INFRA / "emr" / "serverless-job.json").read_text())
SPARK_MINOR = ".".join(pyspark.__version__.split(".")[:2])
IMAGE_ROOT = "/opt/tokenmill"
ENV_PYTHON = "./environment/bin/python"  # the interpreter inside the --archives ...#environment alias
REPO_PATH = re.compile(r"(?<![\w.-])((?:jobs|infra|pipeline|trainer|tokenizer)/[\w/.-]+\.(?:py|sh|toml))")
TEMPLATES = [*(INFRA / "k8s").glob("*.yaml"), *(INFRA / "emr").glob("*.json"), INFRA / "Dockerfile"]


def _job_parser(script: str) -> argparse.ArgumentParser:
    """The parser of jobs/<name>.py, exactly as `tokenmill <name>` and spark-submit build it."""
    module = importlib.import_module(f"tokenmill.jobs.{Path(script).stem}")
    return cli.command_parser(module.COMMAND, exit_on_error=False)


def _accepts(script: str, arguments: list[str]) -> argparse.Namespace:
    parser = _job_parser(script)
    parser.error = lambda message: pytest.fail(f"{script} rejects {arguments}: {message}")  # type: ignore
    return parser.parse_args(arguments)


def _cron_field_ok(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2 or not all(b.isdigit() and low <= int(b) <= high for b in bounds):
            return False
    return True


def valid_cron(expression: str) -> bool:
    """Five fields (minute hour day-of-month month day-of-week), numbers, ranges, lists and steps."""
    fields = expression.split()
    limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    return len(fields) == 5 and all(
        _cron_field_ok(f, *bounds) for f, bounds in zip(fields, limits, strict=True)
    )


def test_cron_checker_knows_good_from_bad():
    assert all(map(valid_cron, ["0 6 * * 1", "*/15 0-6 1,15 * *", "30 2 1 */2 0"]))
    assert not any(map(valid_cron, ["0 6 * *", "60 6 * * 1", "0 24 * * *", "0 6 * * mon-", "0 6 0 * *"]))


def _application_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for name, document in K8S.items():
        assert document["apiVersion"] == "sparkoperator.k8s.io/v1beta2", name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", document["metadata"]["name"]), name
        if document["kind"] == "SparkApplication":
            specs.append((name, document["spec"]))
        else:
            assert document["kind"] == "ScheduledSparkApplication", name
            specs.append((name, document["spec"]["template"]))
    return specs


def test_both_kinds_are_there():
    assert sorted(document["kind"] for document in K8S.values()) == [
        "ScheduledSparkApplication",
        "SparkApplication",
    ]


@pytest.mark.parametrize(
    ("name", "spec"), _application_specs(), ids=lambda value: value if isinstance(value, str) else ""
)
def test_spark_application_spec(name, spec):
    assert spec["type"] == "Python" and spec["mode"] == "cluster"
    assert spec["image"] and ":" in spec["image"]
    assert ".".join(str(spec["sparkVersion"]).split(".")[:2]) == SPARK_MINOR
    script = spec["mainApplicationFile"]
    assert script.startswith(f"local://{IMAGE_ROOT}/")
    relative = script.removeprefix(f"local://{IMAGE_ROOT}/")
    assert (REPO / relative).is_file(), f"{name} runs {relative}, which is not in the repository"
    _accepts(relative, [str(argument) for argument in spec["arguments"]])
    for role in ("driver", "executor"):
        assert int(spec[role]["cores"]) >= 1
        assert re.fullmatch(r"\d+[kmgt]", spec[role]["memory"]), (role, spec[role]["memory"])
    assert int(spec["executor"]["instances"]) >= 1
    assert spec["driver"]["serviceAccount"]


def test_schedule_processes_the_latest_crawl_one_run_at_a_time():
    scheduled = next(d for d in K8S.values() if d["kind"] == "ScheduledSparkApplication")["spec"]
    assert valid_cron(scheduled["schedule"])
    assert scheduled["concurrencyPolicy"] == "Forbid"
    args = _accepts("jobs/run.py", scheduled["template"]["arguments"])
    assert args.crawl == "latest"


def _submit_options(args: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    """spark-submit's command line -> (options with their values, application file, its arguments)."""
    options: dict[str, list[str]] = {}
    position = 1
    while args[position].startswith("--"):
        options.setdefault(args[position], []).append(args[position + 1])
        position += 2
    return options, args[position], args[position + 1 :]


def _confs(values: list[str]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in values)


def _packed_names() -> set[str]:
    """The artifact names infra/pack.py writes."""
    return set(re.findall(r"tokenmill-[a-z]+\.(?:tar\.gz|zip)", (INFRA / "pack.py").read_text()))


def test_emr_step_submits_a_repository_job_with_the_packed_environment():
    assert isinstance(STEPS, list) and STEPS
    for step in STEPS:
        assert step["Name"]
        assert step["ActionOnFailure"] in {
            "TERMINATE_CLUSTER",
            "CANCEL_AND_WAIT",
            "CONTINUE",
            "TERMINATE_JOB_FLOW",
        }
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
        args = step["HadoopJarStep"]["Args"]
        assert args[0] == "spark-submit"
        options, application, arguments = _submit_options(args)
        (archive,) = options["--archives"]
        assert archive.startswith("s3://") and archive.endswith("#environment")
        assert {Path(archive.split("#")[0]).name, Path(options["--py-files"][0]).name} <= _packed_names()
        confs = _confs(options["--conf"])
        assert confs["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == ENV_PYTHON
        assert confs["spark.executorEnv.PYSPARK_PYTHON"] == ENV_PYTHON
        script = REPO_PATH.search(application).group(1)
        assert application.startswith("s3://") and (REPO / script).is_file()
        _accepts(script, arguments)


def test_emr_serverless_job_run():
    assert SERVERLESS["applicationId"] and SERVERLESS["executionRoleArn"].startswith("arn:aws:iam::")
    submit = SERVERLESS["jobDriver"]["sparkSubmit"]
    entry = submit["entryPoint"]
    script = REPO_PATH.search(entry).group(1)
    assert entry.startswith("s3://") and (REPO / script).is_file()
    _accepts(script, submit["entryPointArguments"])
    words = shlex.split(submit["sparkSubmitParameters"])
    assert words[::2] == ["--conf"] * (len(words) // 2) and len(words) % 2 == 0
    confs = _confs(words[1::2])
    assert confs["spark.archives"].endswith("#environment")
    assert {
        Path(confs["spark.archives"].split("#")[0]).name,
        Path(confs["spark.submit.pyFiles"]).name,
    } <= _packed_names()
    assert confs["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == ENV_PYTHON
    assert confs["spark.executorEnv.PYSPARK_PYTHON"] == ENV_PYTHON


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_every_repository_path_a_template_names_exists(template):
    named = set(REPO_PATH.findall(template.read_text()))
    assert all((REPO / path).is_file() for path in named), sorted(
        p for p in named if not (REPO / p).is_file()
    )


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments left out."""
    text = re.sub(r"\\\n", " ", (INFRA / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_base_is_pinned_and_matches_the_installed_spark():
    instructions = _dockerfile()
    args = dict(value.split("=", 1) for kind, value in instructions if kind == "ARG" and "=" in value)
    (base,) = [value for kind, value in instructions if kind == "FROM"]
    image = re.sub(r"\$\{(\w+)\}", lambda match: args[match.group(1)], base.split()[0])
    assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:[0-9a-f]{64}$", image), image
    assert ".".join(args["SPARK_VERSION"].split(".")[:2]) == SPARK_MINOR
    assert '"pyspark==${SPARK_VERSION}"' in dict(instructions)["RUN"]


def test_dockerfile_copies_what_the_templates_run():
    instructions = _dockerfile()
    workdir = next(value for kind, value in instructions if kind == "WORKDIR")
    assert workdir == IMAGE_ROOT
    copied = []
    for kind, value in instructions:
        if kind == "COPY":
            *sources, destination = value.split()
            assert all((REPO / source).exists() for source in sources), sources
            copied += [source for source in sources if (REPO / source).is_dir()]
    for spec in (spec for _, spec in _application_specs()):
        relative = spec["mainApplicationFile"].removeprefix(f"local://{IMAGE_ROOT}/")
        assert relative.split("/")[0] in copied, relative
    modules = re.search(r'python3 -c "import ([\w., ]+)"', dict(instructions)["RUN"]).group(1).split(", ")
    folders = [REPO / module.removeprefix("tokenmill.").replace(".", "/") for module in modules]
    assert all(
        folder.with_suffix(".py").is_file() or (folder / "__init__.py").is_file() for folder in folders
    )
    users = [value for kind, value in instructions if kind == "USER"]
    assert users[-1] not in ("root", "0")
    assert json.loads(dict(instructions)["ENTRYPOINT"]) == ["/opt/entrypoint.sh"]


def _launch(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """infra/torchrun.sh with a stand-in torchrun that prints the arguments it was given."""
    fake = tmp_path / "torchrun"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", str(INFRA / "torchrun.sh"), "--max-steps", "10"],
        env={"PATH": "/usr/bin:/bin", "TORCHRUN": str(fake), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_torchrun_launcher_parses_and_names_the_trainer():
    subprocess.run(["bash", "-n", str(INFRA / "torchrun.sh")], check=True)
    assert "jobs/train.py" in (INFRA / "torchrun.sh").read_text()
    assert (REPO / "jobs" / "train.py").is_file()


def test_torchrun_single_node(tmp_path):
    result = _launch(tmp_path, DATA="out/tokens/gpt2", GPUS="8")
    assert result.returncode == 0, result.stderr
    command = result.stdout.split()
    assert command[:3] == ["--standalone", "--nnodes=1", "--nproc_per_node=8"]
    assert command[3] == str(REPO / "jobs" / "train.py")
    trainer = _accepts("jobs/train.py", command[4:])
    assert (trainer.data, trainer.config, trainer.out, trainer.resume, trainer.max_steps) == (
        "out/tokens/gpt2",
        "gpt2-124m",
        "out/train",
        True,
        10,
    )


def test_torchrun_multi_node(tmp_path):
    env = {
        "DATA": "d",
        "GPUS": "4",
        "NNODES": "2",
        "NODE_RANK": "1",
        "MASTER_ADDR": "10.0.0.5",
        "CONFIG": "tiny",
    }
    result = _launch(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    command = result.stdout.split()
    assert command[:6] == [
        "--nnodes=2",
        "--node_rank=1",
        "--nproc_per_node=4",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=10.0.0.5:29500",
        "--rdzv_id=tokenmill-train",
    ]
    assert _accepts("jobs/train.py", command[7:]).config == "tiny"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GPUS": "1"}, "set DATA"),
        ({"DATA": "d", "GPUS": "0"}, "no GPU found"),
        ({"DATA": "d", "GPUS": "2", "NNODES": "2", "NODE_RANK": "0"}, "set MASTER_ADDR"),
    ],
)
def test_torchrun_refuses_an_incomplete_layout(tmp_path, env, message):
    result = _launch(tmp_path, **env)
    assert result.returncode != 0 and message in result.stderr


def test_torchrun_trains_on_cuda_and_never_falls_back(tmp_path):
    result = _launch(tmp_path, DATA="d", GPUS="2")
    assert result.returncode == 0, result.stderr
    assert _accepts("jobs/train.py", result.stdout.split()[4:]).device == "cuda"


def _setup_function(
    call: str, tmp_path: Path, nvidia_smi: str | None, system: str = "/usr/bin:/bin"
) -> subprocess.CompletedProcess[str]:
    """A function of infra/setup.sh, sourced (which runs nothing else), with `nvidia-smi` on PATH
    standing for the driver's tool of a GPU machine (or none: no driver), before `system`."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    if nvidia_smi is not None:
        (folder / "nvidia-smi").write_text(nvidia_smi)
        (folder / "nvidia-smi").chmod(0o755)
    return subprocess.run(
        [shutil.which("bash"), "-c", f'source "{INFRA / "setup.sh"}"; {call}'],
        env={"PATH": f"{folder}:{system}".rstrip(":")},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_setup_parses_and_sourcing_it_runs_nothing(tmp_path):
    subprocess.run(["bash", "-n", str(INFRA / "setup.sh")], check=True)
    sourced = _setup_function("echo sourced", tmp_path, None)
    assert sourced.returncode == 0 and sourced.stdout == "sourced\n", sourced.stderr


@pytest.mark.parametrize(
    ("nvidia_smi", "gpu"),
    [
        ("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5e2a)'\n", True),
        (
            "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-3)'\n",
            True,
        ),
        # eight GPUs, listed slowly: a reader that stops at the first line leaves nvidia-smi to die of
        # SIGPIPE, which pipefail would report as "no GPU"
        ('#!/bin/sh\nfor i in 0 1 2 3 4 5 6 7; do echo "GPU $i: NVIDIA H100"; sleep 0.05; done\n', True),
        ("#!/bin/sh\necho 'No devices were found'\nexit 6\n", False),  # a driver without a GPU
        (None, False),  # no driver at all
    ],
)
def test_setup_finds_nvidia_gpus(tmp_path, nvidia_smi, gpu):
    if nvidia_smi is None and any(Path(folder, "nvidia-smi").exists() for folder in ("/usr/bin", "/bin")):
        pytest.skip("this machine has nvidia-smi")
    result = _setup_function("has_nvidia_gpu && echo gpu || echo none", tmp_path, nvidia_smi)
    assert result.stdout == ("gpu\n" if gpu else "none\n"), result.stderr


def test_setup_reads_the_venvs_torch_build_and_header_path(tmp_path):
    venv = Path(sys.prefix)
    result = _setup_function(f'torch_cuda "{venv}"; python_header "{venv}"', tmp_path, None)
    cuda, header = result.stdout.splitlines()
    assert cuda == str(torch.version.cuda)  # "None" for a CPU build: what set-up replaces on GPU machines
    assert header == str(Path(sysconfig.get_paths()["include"], "Python.h"))


def test_setup_says_what_torch_compile_needs_when_it_cannot_install_it(tmp_path):
    # Nothing on PATH: no compiler, and no apt-get to install one with.
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    result = _setup_function(f'install_compile_needs "{sys.prefix}"', tmp_path, None, system="")
    assert result.returncode == 1
    assert (
        "needs a C compiler and " + str(Path(sysconfig.get_paths()["include"], "Python.h")) in result.stderr
    )
    assert f"apt-get install build-essential python{version}-dev" in result.stderr


def test_setup_replaces_a_cpu_torch_on_a_gpu_machine():
    main = (INFRA / "setup.sh").read_text().split("main() {")[1]
    # A CPU build found on a GPU machine is uninstalled, then a CUDA build goes in (pip's default
    # index, or TORCH_INDEX_URL) and torch.compile's needs; without GPUs the pinned CPU build.
    replace = main.index('if [ "$gpu" = 1 ] && [ "$(torch_cuda "$venv")" = None ]; then')
    assert replace < main.index("pip uninstall -q -y torch") < main.index("'torch>=2.5'")
    assert "'torch==2.13.0'" in main and '--index-url "$TORCH_INDEX_URL"' in main
    assert main.index("'torch>=2.5'") < main.index('install_compile_needs "$venv"')
