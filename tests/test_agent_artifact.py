"""The shipped agent: spotkit-agent.pyz built at synthesis and run as on an instance.

Under Python 3.9 with ``-I -S`` (Amazon Linux 2023's /usr/bin/python3, no site-packages) against the IMDS
emulator and moto over HTTP: notice -> hook -> SIGTERM to the workload -> lifecycle completion, through
the AWS CLI (boto3 is not importable there), through boto3 (a Python that has it), and with neither (a
plain log line: the handler completes the action).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from spotkit.constructs.agent_artifact import ARTIFACT_NAME, build_agent_pyz, private_build_dir
from tests.support.agent_harness import group_with_drain_hook, start_workload
from tests.support.boot_part import AWS_CLI
from spotkit.rehearsal.local.control import completed_lifecycle_actions
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator

ROOT = Path(__file__).resolve().parents[1]


def python39() -> str:
    """pyenv's Python 3.9 (the Python of Amazon Linux 2023), or skip saying what is missing."""
    exe = shutil.which("python3.9")
    if exe is None:
        pytest.skip("python3.9 is not on PATH (pyenv install 3.9.18): the agent's 3.9 run cannot be checked here")
    env = {**os.environ, "PYENV_VERSION": "3.9.18"}
    probe = subprocess.run([exe, "-I", "-S", "-c", "import sys; print(sys.version_info[:2], sys.executable)"],
                           env=env, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or not probe.stdout.startswith("(3, 9) "):
        pytest.skip(f"pyenv has no Python 3.9.18 here ({probe.stderr.strip()[:200]})")
    return probe.stdout.split(" ", 2)[2].strip()  # the interpreter itself, not pyenv's shim (shims hold an `aws`)


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    return build_agent_pyz(tmp_path_factory.mktemp("build")).path


# --- the build ------------------------------------------------------------------------------------

def test_build_is_deterministic_and_holds_every_agent_module(tmp_path):
    # GIVEN two builds into different folders
    a, b = build_agent_pyz(tmp_path / "a"), build_agent_pyz(tmp_path / "b")
    # THEN the bytes (and so the sha256 written into user data) are the same
    assert a.sha256 == b.sha256 == hashlib.sha256(a.path.read_bytes()).hexdigest()
    assert a.path.read_bytes() == b.path.read_bytes() and a.path.name == ARTIFACT_NAME
    with zipfile.ZipFile(a.path) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}  # no zlib version in the bytes
    # AND every module of toolkit/runtime/agent ships (a policy.py added there ships too), with the notice module
    agent_modules = {f"spotkit/runtime/agent/{p.name}" for p in (ROOT / "toolkit" / "runtime" / "agent").glob("*.py")}
    assert agent_modules <= set(names)
    assert {"__main__.py", "spotkit/__init__.py", "spotkit/runtime/__init__.py", "spotkit/runtime/notice.py"} <= set(names)
    # AND nothing of the handler: the folder decides what ships
    assert not [n for n in names if n.startswith("spotkit/runtime/interruption/")]
    assert a.path.read_bytes().startswith(b"#!/usr/bin/python3 -I -S\n")


def test_build_folder_is_private():
    built = build_agent_pyz()
    base = private_build_dir()
    assert built.path.parent.parent == base
    assert oct(os.stat(base).st_mode & 0o777) == "0o700"
    assert oct(os.stat(built.path.parent).st_mode & 0o777) == "0o700"


def test_agent_package_imports_no_click_boto3_or_yaml_at_module_level():
    code = ("import sys, spotkit.runtime.agent, spotkit.runtime.agent.cli, spotkit.runtime.agent.core, spotkit.runtime.agent.lifecycle\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'boto3', 'botocore', 'yaml'))\n"
            "print(bad)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_pyz_takes_the_options_of_spotkit_agent():
    from spotkit.runtime.agent.cli import build_parser
    from spotkit.cli.agent_cmd import agent_command

    click_options = {o for p in agent_command.params for o in p.opts}
    pyz_options = {o for a in build_parser()._actions for o in a.option_strings} - {"-h", "--help"}
    assert click_options <= pyz_options
    assert pyz_options - click_options == {"--region", "--profile", "--endpoint-url"}  # spotkit's global options


@pytest.mark.parametrize("args, message", [
    (["--workload-pgid", "-5"], "process group -5 is not a workload"),
    (["--workload-pgid", "0"], "process group 0 is not a workload"),
    (["--workload-pgid", "abc"], "'abc' is not a process group id"),
    (["--token-ttl", "0"], "0 is not between 1 and 21600"),
    (["--interval", "0"], "interval must be more than 0 seconds"),
])
def test_bad_options_are_usage_errors_under_python39(pyz, args, message):
    exe = python39()
    done = subprocess.run([exe, "-I", "-S", str(pyz), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYENV_VERSION": "3.9.18"})
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


# --- over the wire ---------------------------------------------------------------------------------

def _workload(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    marker = tmp_path / "workload-got"
    proc = start_workload(marker)
    pidfile = tmp_path / "workload.pid"
    pidfile.write_text(str(proc.pid))
    return proc, pidfile, marker


def _run_agent(python: list[str], pyz: Path, aws, tmp_path: Path, *, path: str, extra_env: dict = None):
    group_with_drain_hook(aws, "spotkit-training")
    workload, pidfile, marker = _workload(tmp_path)
    hook_out = tmp_path / "hook"
    env = {"PATH": path, "HOME": str(tmp_path), "PYENV_VERSION": "3.9.18",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           **(extra_env or {})}
    try:
        with ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as imds:
            # GIVEN a spot notice and the group terminating the instance
            imds.interrupt("spot", lead_seconds=120)
            imds.interrupt("lifecycle")
            # WHEN the shipped agent runs as the unit runs it
            done = subprocess.run(
                [*python, str(pyz), "--metadata-url", imds.url, "--once", "--interval", "0.1",
                 "--on-notice", f'echo "$SPOTKIT_NOTICE_KIND $SPOTKIT_NOTICE_ID" >> {hook_out}',
                 "--workload-pidfile", str(pidfile), "--endpoint-url", aws.url, "--region", "us-east-1"],
                env=env, capture_output=True, text=True, timeout=180)
        assert workload.wait(timeout=30) == 0
    finally:
        if workload.poll() is None:
            workload.kill()
            workload.wait()
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, done.stderr + done.stdout
    return lines, hook_out, marker


def _event(lines: list[dict], name: str) -> dict:
    found = [e for e in lines if e["event"] == name]
    assert found, f"no {name} in {[e['event'] for e in lines]}"
    return found[0]


def test_pyz_under_python39_isolated_drains_and_completes_through_the_aws_cli(aws, pyz, tmp_path):
    exe = python39()
    if not AWS_CLI.exists():
        pytest.skip(f"the AWS CLI is not installed beside {sys.executable}")
    # GIVEN python3.9 -I -S (no site-packages: no boto3) and the AWS CLI on PATH
    path = f"{AWS_CLI.parent}{os.pathsep}/usr/bin:/bin"
    lines, hook_out, marker = _run_agent([exe, "-I", "-S"], pyz, aws, tmp_path, path=path)
    # THEN the hook ran, then the workload got SIGTERM, then the action was completed in moto by the CLI
    kind, notice_id = hook_out.read_text().split()
    assert kind == "spot-interruption" and notice_id.startswith("spot-interruption:i-0123456789abcdef0:")
    assert marker.exists()  # written by its SIGTERM handler
    order = [e["event"] for e in lines]
    assert order.index("hook-finished") < order.index("workload-signaled") < order.index("lifecycle-completed")
    assert _event(lines, "lifecycle-completed")["via"] == "AWS CLI"
    assert completed_lifecycle_actions() == [{
        "action": "CompleteLifecycleAction", "group": "spotkit-training", "hook": "spotkit-drain",
        "instance_id": "i-0123456789abcdef0", "token": None, "result": "CONTINUE"}]


def test_pyz_completes_through_boto3_where_boto3_is_importable(aws, pyz, tmp_path):
    # GIVEN a Python that has boto3 (this venv's, isolated from the environment with -I) and no AWS CLI on PATH
    lines, hook_out, marker = _run_agent([sys.executable, "-I"], pyz, aws, tmp_path, path="/usr/bin:/bin")
    assert marker.exists() and hook_out.read_text().startswith("spot-interruption ")
    assert _event(lines, "lifecycle-completed")["via"] == "boto3"
    assert [c["result"] for c in completed_lifecycle_actions()] == ["CONTINUE"]


def test_pyz_without_boto3_or_aws_cli_says_the_handler_completes_it(aws, pyz, tmp_path):
    exe = python39()
    # GIVEN python3.9 -I -S and a PATH without the AWS CLI
    if shutil.which("aws", path="/usr/bin:/bin"):
        pytest.skip("an AWS CLI is installed system-wide here")
    lines, hook_out, marker = _run_agent([exe, "-I", "-S"], pyz, aws, tmp_path, path="/usr/bin:/bin")
    # THEN the hook and the signal happened, and a plain log line says who completes the action
    assert marker.exists() and hook_out.read_text().startswith("spot-interruption ")
    left = _event(lines, "lifecycle-left-to-handler")
    assert "the interruption handler completes the lifecycle action" in left["reason"]
    assert completed_lifecycle_actions() == []


def test_every_toolkit_import_of_the_agent_package_is_inside_the_archive():
    # A module added to toolkit/runtime/agent (policy.py...) that imports another spotkit module would break on the
    # instance: the archive holds the package markers, spotkit/runtime/notice.py and spotkit/runtime/agent/* only.
    import ast

    from spotkit.constructs.agent_artifact import artifact_sources

    shipped = {name[:-3].replace("/", ".").removesuffix(".__init__") for name, _ in artifact_sources()
               if name.endswith(".py")}
    missing = []
    for path in sorted((ROOT / "toolkit" / "runtime" / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            missing += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "spotkit" and n not in shipped]
    assert missing == []


@pytest.mark.parametrize("stack", ["training", "notebook", "ecs_spot", "gpu_inference"])
def test_every_stacks_agent_unit_is_a_command_line_the_shipped_agent_accepts(stack, tmp_path):
    # GIVEN a stack as synthesized (its unit's ExecStart runs the shipped pyz with the stack's settings)
    import re
    import shlex

    from spotkit.runtime.agent.cli import build_parser
    from spotkit.synth import synthesize

    text = synthesize([stack], tmp_path, cache_folder=tmp_path / "cache")[0].read_text()
    match = re.search(r"ExecStart=([^\\\"]*?spotkit-agent\.pyz[^\\\"]*)", text)
    assert match, f"{stack}: no agent unit in the user data"
    argv = shlex.split(match.group(1).replace("$$", "$").replace("%%", "%"))
    options = argv[argv.index("/opt/spotkit/spotkit-agent.pyz") + 1:]
    # THEN the pyz's own parser takes every option (argparse exits 2 on one it does not know)
    args = build_parser().parse_args(options)
    assert args.metadata_url == "http://169.254.169.254" and args.on_notice
    if stack == "training":
        assert (args.notice_policy, args.checkpoint_seconds) == ("checkpoint-and-continue", 60.0)
