"""Hints that work when pasted: the ``next:`` steps the demo prints, and the CLI examples of README.md and
of the documentation site (docs/*.md), run as a user would run them (a shell, the installed ``spotkit``),
against a running emulator.

Each line is pasted into a clean shell, as a user's is: ``env -i`` with HOME and a login PATH, no
SPOTKIT_* variables, no TF_CLI_CONFIG_FILE, no JSII settings. (PYTHONPATH names this tree: the
installed ``spotkit`` is an editable install of it, so in a clone this changes nothing, and in a
worktree it runs the worktree's code.)"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.network import free_port, wait_for_port
from spotkit.rehearsal.local import emulator

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "check"
SPOTKIT_BIN = Path(sys.executable).parent / "spotkit"
LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"  # a login shell's PATH (terraform lives in /usr/local/bin)

# Documented examples that need a real AWS account (or what only a real apply gives): not run, for this reason.
README_NEEDS_AWS = {
    "spotkit --config ci.yaml plan training": "plans --target aws: needs AWS credentials and the account's state",
    "spotkit apply training --plan training.tfplan": "applies to a real AWS account",
    "spotkit synth eks_gpu && cd cdktf.out/stacks/eks_gpu && terraform init && terraform apply":
        "terraform apply of the EKS stack to a real AWS account",
    "spotkit k8s render eks_gpu --out k8s.out": "takes the file system ids from the outputs of a real eks_gpu apply "
                                                "($(terraform output ...))",
    "spotkit local start && spotkit plan my-training --target local": "runs in your own app's folder: "
        "tests/test_own_stack_wheel.py plans examples/own-stack that way, from the wheel",
}


# plan.json here is a third-party plan (tests/fixtures/check) that has spot-safety errors by design: the
# example works when it checks the file and reports them (exit 1 is `spotkit check`'s "findings" code).
EXPECTED_FINDINGS = {"spotkit check plan.json": "SPOT005, SPOT006, SPOT007"}


def shell_env(extra: dict[str, str] | None = None, venv_on_path: bool = True) -> dict[str, str]:
    """A clean shell's environment (``env -i HOME=... PATH=...``), with the venv's bin first on PATH (an
    activated venv) or not at all (right after ``make demo``)."""
    path = f"{SPOTKIT_BIN.parent}{os.pathsep}{LOGIN_PATH}" if venv_on_path else LOGIN_PATH
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": path, "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def sh(command: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None,
       venv_on_path: bool = True) -> subprocess.CompletedProcess:
    """Run a pasted command line in bash, as typed, in a clean shell."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=shell_env(env, venv_on_path), capture_output=True,
                          text=True, timeout=timeout)


def printed_hints(text: str) -> list[str]:
    """The ``next:`` lines of a command's output, whole (a trailing shell comment included)."""
    return [line.split("next:", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("next:")]


def test_spotkit_on_path():
    assert SPOTKIT_BIN.is_file(), f"the spotkit entry point is installed next to {sys.executable}"


# --- the demo's hints ---------------------------------------------------------------------------

@pytest.fixture()
def project_with_emulator(tmp_path):
    state, started = emulator.start(tmp_path / ".spotkit", port=free_port())
    assert started
    yield tmp_path, state
    emulator.stop(tmp_path / ".spotkit")


def test_the_demos_closing_hints_work_when_pasted(project_with_emulator):
    from spotkit.cli.demo_cmd import demo_next_hints

    cwd, state = project_with_emulator
    hints = demo_next_hints(state.url)
    assert hints[-1] == "spotkit local stop"
    # the AWS CLI habit (global options after the command) works too: the form the demo used to print
    for hint in [*hints[:-1], f"spotkit status --endpoint-url {state.url}"]:
        done = sh(hint, cwd, timeout=120)
        assert done.returncode == 0, (hint, done.stderr)
        assert "no spotkit group found" in done.stdout, (hint, done.stdout)
    stopped = sh(hints[-1], cwd, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert f"emulator stopped (pid {state.pid})" in stopped.stdout
    assert not emulator.status(cwd / ".spotkit").running


def test_the_drills_check_hint_works_when_pasted(tmp_path):
    from spotkit.cli.drill_cmd import CHECK_HINT

    done = sh(CHECK_HINT + "   # is your Terraform ready for this?", tmp_path)  # the line as the drill prints it
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "cdktf.out" / "stacks" / "training" / "cdk.tf.json").is_file()


@pytest.mark.terraform
def test_the_synth_hints_work_when_pasted_into_a_shell_without_the_venv(project_with_emulator):
    from spotkit.deploy import mirror

    terraform = shutil.which("terraform", path=LOGIN_PATH) or shutil.which("tofu", path=LOGIN_PATH)
    if terraform is None:
        pytest.skip(f"needs terraform on a login PATH ({LOGIN_PATH})")
    # GIVEN the emulator of this folder's project, and a shell where the venv is not active (as right after
    # `make demo`): spotkit is run by its path, and no variable names the provider mirror
    cwd, state = project_with_emulator
    rel = os.path.relpath(SPOTKIT_BIN, cwd)
    synth = sh(f"{SPOTKIT_BIN} synth training", cwd, venv_on_path=False)
    assert synth.returncode == 0, synth.stderr
    hints = printed_hints(synth.stdout)
    # THEN every hint runs spotkit by the path that works here, and terraform init finds the machine's mirror
    found = mirror.discover()
    init = f"TF_CLI_CONFIG_FILE={cwd / 'cdktf.out' / 'terraformrc'} terraform init" if found else "terraform init"
    prog = rel if not rel.startswith("..") else str(SPOTKIT_BIN)
    assert [h.split("#")[0].strip() for h in hints] == [
        f"{prog} check cdktf.out", f"{prog} local start && {prog} plan training --target local",
        f"cd cdktf.out/stacks/training && {init}"]
    # WHEN each printed line is pasted THEN it works
    for hint in hints:
        done = sh(hint, cwd, timeout=1200, env={"SPOTKIT_TERRAFORM_TIMEOUT": "900"}, venv_on_path=False)
        assert done.returncode == 0, (hint, done.stdout[-2000:], done.stderr[-2000:])
    assert (cwd / ".spotkit" / "local" / "training" / "tfplan").is_file()


def test_a_hint_names_the_spotkit_that_runs_when_it_is_not_on_path(tmp_path):
    from spotkit.cli.hints import not_on_path_note, paste_ready, program

    # GIVEN a venv's spotkit that the shell's PATH does not find
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "spotkit"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (bin_dir / "activate").write_text("")
    prog = program(argv0=str(exe), path="/usr/bin:/bin", cwd=tmp_path)
    # THEN hints run it by its path (relative to the current folder), and only its command words change
    assert prog == ".venv/bin/spotkit"
    assert program(argv0=str(exe), path="/usr/bin:/bin", cwd=tmp_path / ".venv") == "bin/spotkit"
    assert program(argv0=str(exe), path="/usr/bin:/bin", cwd=tmp_path / "elsewhere") == str(exe)
    assert program(argv0=str(exe), path=f"{bin_dir}:/usr/bin", cwd=tmp_path) == "spotkit"
    assert paste_ready("spotkit local start && spotkit --endpoint-url http://127.0.0.1:4566 status", prog) == (
        ".venv/bin/spotkit local start && .venv/bin/spotkit --endpoint-url http://127.0.0.1:4566 status")
    assert paste_ready("kubectl get nodes   # no spotkit group here", prog) == "kubectl get nodes   # no spotkit group here"
    (bin_dir / "pip").write_text("")  # an extra goes into the venv spotkit runs from, not the shell's pip
    assert paste_ready("pip install 'spotkit[local]'", prog, cwd=tmp_path) == ".venv/bin/pip install 'spotkit[local]'"
    assert "(or run '. .venv/bin/activate' first, then type plain 'spotkit')" in not_on_path_note(prog, cwd=tmp_path)
    assert not_on_path_note("spotkit") is None


def test_the_drill_and_demo_emulator_takes_a_free_port_when_the_default_is_taken(tmp_path, monkeypatch):
    # GIVEN the default port held by another program
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    monkeypatch.setattr(emulator, "DEFAULT_PORT", taken)
    try:
        # WHEN `local start --port` asks for it THEN it is refused with a port that is free now
        with pytest.raises(emulator.ToolkitError) as caught:
            emulator.start(tmp_path / "a", port=taken)
        assert caught.value.hint.startswith("spotkit local start --port ")
        # WHEN the drill or the demo starts one (port=None) THEN it takes another port, and is reused after
        state, started = emulator.start(tmp_path / "p", port=None)
        try:
            assert started and state.port != taken
            again, started_again = emulator.start(tmp_path / "p", port=None)
            assert (again.port, started_again) == (state.port, False)
        finally:
            emulator.stop(tmp_path / "p")
    finally:
        holder.close()


def test_a_global_option_after_a_nested_command_is_the_same_as_before_it(project_with_emulator):
    cwd, state = project_with_emulator
    before = sh(f"spotkit --endpoint-url {state.url} --output json recover volumes --group nosuchgroup --dry-run", cwd)
    after = sh(f"spotkit recover volumes --group nosuchgroup --dry-run --endpoint-url={state.url} -o json", cwd)
    assert before.returncode == after.returncode == 1
    assert before.stderr == after.stderr
    assert "no spotkit group named 'nosuchgroup'" in after.stderr


# --- the documented examples (README.md, then docs/*.md) ------------------------------------------

def documented_pages() -> list[Path]:
    """README.md and every page of the documentation site, in that order (the site's pages by name)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_text() -> str:
    return "\n".join(page.read_text() for page in documented_pages())


def own_stack_example() -> str:
    """README's "Your own stack" app (the fenced Python block that composes spotkit's constructs)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    return next(block for block in blocks if "SpotComputeGroup(" in block)


def readme_commands() -> list[tuple[str, list[str]]]:
    """Each fenced command line of README.md and docs/*.md that runs spotkit, as (line, its spotkit segments)."""
    text = documented_text()
    blocks = re.findall(r"^```([a-z]*)\n(.*?)^```", text, flags=re.M | re.S)
    found = []
    for lang, block in blocks:
        if lang == "text":  # a program's output, not commands to paste
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"^\s*(- )?(run: |# [a-z ]+: )", "", line).strip()
            line = re.split(r"\s{2,}#|\s+\|\|", line)[0].strip().rstrip("&").strip()
            segments = [s.strip() for s in line.split("&&")]
            if any(s.startswith("spotkit ") or s == "spotkit" for s in segments):
                found.append((line, [s for s in segments if s.startswith("spotkit")]))
    return found


def test_readme_has_examples_and_every_one_is_run_or_skipped_with_a_reason():
    commands = readme_commands()
    assert len(commands) >= 6, commands
    for prefix in README_NEEDS_AWS:
        assert any(line.startswith(prefix) for line, _ in commands), f"the docs no longer have {prefix!r}: update the list"


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    # GIVEN a folder with the inputs the examples name (your own Terraform JSON, a plan's JSON, and README's own
    # stack synthesized by `python3 main.py` as its example says)
    (tmp_path / "path" / "to").mkdir(parents=True)
    shutil.copy(FIXTURES / "good.tf.json", tmp_path / "path" / "to" / "main.tf.json")
    shutil.copy(FIXTURES / "third_party_autoscaling.plan.json", tmp_path / "plan.json")
    (tmp_path / "main.py").write_text(own_stack_example())
    shutil.copytree(ROOT / "tests" / "fixtures" / "traces", tmp_path / "tests" / "fixtures" / "traces")  # simulate's
    made = sh(f"{sys.executable} main.py", tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    ran, skipped, failed = [], {}, []
    for line, segments in readme_commands():
        reason = next((why for prefix, why in README_NEEDS_AWS.items() if line.startswith(prefix)), None)
        if reason:
            skipped[line] = reason
            continue
        if segments[0].startswith(("spotkit imds-mock", "spotkit agent")):
            continue  # the background pair: test_readme_agent_rehearsal_runs
        for segment in segments:  # the other segments make inputs provided above (terraform show -json ...)
            done = sh(segment, tmp_path)
            if segment in EXPECTED_FINDINGS:
                assert done.returncode == 1, (segment, done.stdout[-2000:], done.stderr[-2000:])
                assert "file(s) checked" in done.stdout
                assert f"check found 3 finding(s) at or above error: {EXPECTED_FINDINGS[segment]}" in done.stderr
            elif done.returncode != 0:  # every broken example at once, not only the first
                failed.append((segment, done.returncode, done.stderr[-1500:]))
            ran.append(segment)
    assert failed == []
    assert "spotkit synth" in ran and "spotkit check plan.json" in ran and "spotkit check cdktf.out" in ran, ran
    assert (tmp_path / "check.sarif").is_file()
    assert set(skipped) and all(skipped.values())


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_readme_agent_rehearsal_runs(tmp_path):
    # GIVEN the documented three lines: the IMDS mock and the agent in the background, then a notice by curl
    lines = [line for line, _ in readme_commands() if line.startswith(("spotkit imds-mock", "spotkit agent"))]
    assert len(lines) == 2, lines
    block = documented_text()
    curl = next(line for line in block.splitlines() if line.startswith("curl -X POST 127.0.0.1:8111/spotkit/interrupt"))
    if _port_in_use(8111):
        pytest.skip("port 8111 (the documented IMDS mock port) is in use on this machine")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    hook = tmp_path / "checkpoint.sh"
    hook.write_text(f"#!/bin/sh\necho saved > {tmp_path / 'checkpoint.done'}\n")
    hook.chmod(0o755)
    procs = []
    try:
        for line in lines:
            procs.append(subprocess.Popen(["bash", "-c", line], cwd=tmp_path, env=shell_env(), start_new_session=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            if "imds-mock" in line:
                wait_for_port(8111, timeout=60)
        done = sh(curl, tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        # THEN the agent ran the hook and exited (--once), with success
        out, err = procs[1].communicate(timeout=120)
        assert procs[1].returncode == 0, (out, err)
        assert (tmp_path / "checkpoint.done").read_text().strip() == "saved"
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
