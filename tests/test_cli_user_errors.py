"""Every bad input or broken environment is a user error: exit 1, a plain message and a ``next:`` step,
never "Internal error ... report it" (exit 3). Each case runs the real entry point."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.support.cli import run_spotkit
from tests.support.network import free_port


def assert_user_error(run, *fragments: str, next_has: str) -> None:
    assert run.code == 1, (run.code, run.err)
    assert "Internal error" not in run.err
    assert "Traceback" not in run.err
    for fragment in fragments:
        assert fragment in run.err, run.err
    assert run.next_lines, run.err
    assert next_has in run.next_lines[0], run.next_lines


@pytest.fixture()
def no_credentials(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "SPOTKIT_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_no_aws_credentials(capsys, no_credentials):
    run = run_spotkit(capsys, "status")
    assert_user_error(run, "no usable AWS credentials", next_has="aws configure")
    # the emulator alternative in the hint is the same command, in a form that runs
    assert "spotkit local start && spotkit status --endpoint-url http://127.0.0.1:4566" in run.next_lines[0]


def test_connection_refused_on_endpoint_url(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    run = run_spotkit(capsys, "--endpoint-url", url, "status")
    # THEN the hint starts the emulator on the port the command uses (`local start` alone takes 4566)
    port = url.rsplit(":", 1)[1]
    assert_user_error(run, f"could not connect to {url}", "the local emulator is not answering",
                      next_has=f"spotkit local start --port {port} && spotkit --endpoint-url {url} status")


def test_emulator_that_dies_mid_call(capsys):
    # GIVEN an endpoint that accepts the connection and then closes it without an answer (what a client
    # sees when the emulator is stopped in the middle of a runbook)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        run = run_spotkit(capsys, "--endpoint-url", f"http://127.0.0.1:{port}", "recover", "volumes",
                          "--group", "training", "--dry-run")
    finally:
        listener.close()
    assert_user_error(run, "the local emulator stopped?", next_has=f"spotkit local start --port {port} && spotkit --endpoint-url")
    assert run.next_lines[0].endswith("recover volumes --group training --dry-run   # runbooks resume from their journal")


def test_non_utf8_config_file(capsys, tmp_path):
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_bytes("training:\n  name: caf\xe9\n".encode("latin-1"))
    run = run_spotkit(capsys, "--config", str(cfg), "synth", "training", "--out", str(tmp_path / "out"))
    assert_user_error(run, "is not UTF-8 text (byte 0xe9", next_has="save it as UTF-8")


def test_out_in_an_unwritable_place(capsys):
    run = run_spotkit(capsys, "synth", "training", "--out", "/proc/foo")
    assert_user_error(run, "cannot use the path /proc/foo", next_has="a folder you can write to")
    # the same command with the option that named the path moved to a folder the user can write to
    assert run.next_lines == ["spotkit synth training --out ./spotkit-out   # a folder you can write to"]


def test_backend_key_with_an_unknown_placeholder(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text('settings:\n  backend: {type: s3, bucket: b, key: "spotkit/{name}.tfstate"}\n')
    run = run_spotkit(capsys, "--config", str(cfg), "plan", "training", "--project-dir", str(tmp_path / "p"))
    assert_user_error(run, "settings.backend.key: unknown placeholder {name}", next_has="{stack}")


def test_hanging_terraform_binary(capsys, tmp_path, monkeypatch):
    fake = tmp_path / "terraform"
    fake.write_text("#!/bin/sh\nsleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SPOTKIT_TERRAFORM_TIMEOUT", "1")
    run = run_spotkit(capsys, "plan", "training", "--terraform-bin", str(fake), "--project-dir", str(tmp_path / "p"))
    assert_user_error(run, "did not answer 'version' within 1 s", next_has="--terraform-bin")


@pytest.mark.parametrize("content, expected", [
    ('{"version": "0", "detail-type": "EC2 Spot Instance Interrupt', "the file ends early: truncated?"),
    ("[1, 2]", "item 0 is a JSON int, not an event object"),
    ('{"detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2"}',
     "could not be read as an interruption event"),
], ids=["truncated", "not-objects", "no-detail"])
def test_bad_event_file(capsys, tmp_path, content, expected):
    f = tmp_path / "event.json"
    f.write_text(content)
    run = run_spotkit(capsys, "handle-events", "--event-file", str(f), "--journal-file", str(tmp_path / "j.jsonl"),
                      "--dry-run")
    assert_user_error(run, expected, next_has=f"fix {f}")


def test_unknown_settings_key_with_did_you_mean(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("settings:\n  provider_mirro: auto\n")
    run = run_spotkit(capsys, "--config", str(cfg), "synth", "training", "--out", str(tmp_path / "o"))
    assert_user_error(run, "settings.provider_mirro: unknown setting (did you mean 'provider_mirror'?)",
                      next_has="backend, provider_mirror")


def test_group_that_does_not_exist(capsys, aws):
    # GIVEN an account with no spotkit group at all
    for args in (["recover", "volumes", "--group", "nosuchgroup", "--dry-run"], ["status", "--group", "nosuchgroup"]):
        run = run_spotkit(capsys, "--endpoint-url", aws.url, *args)
        assert_user_error(run, "no spotkit group named 'nosuchgroup' here", next_has="spotkit stacks   # then apply")
    # GIVEN one group WHEN another name is asked for THEN the message lists the group that exists
    asg = aws.client("autoscaling")
    ec2 = aws.client("ec2")
    lt = ec2.create_launch_template(LaunchTemplateName="lt", LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                                 "InstanceType": "m6i.large"})
    asg.create_auto_scaling_group(AutoScalingGroupName="training", MinSize=0, MaxSize=1,
                                  LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]},
                                  AvailabilityZones=["us-east-1a"],
                                  Tags=[{"Key": "spotkit:group", "Value": "training", "PropagateAtLaunch": True}])
    run = run_spotkit(capsys, "--endpoint-url", aws.url, "status", "--group", "nosuchgroup")
    assert_user_error(run, "(groups: training)", next_has="spotkit status   # lists the groups")
    assert run_spotkit(capsys, "--endpoint-url", aws.url, "status", "--group", "training").code == 0


def test_drill_without_the_plot_extra_says_so_first_and_still_writes_its_data(capsys, tmp_path, monkeypatch):
    import json
    import sys

    # GIVEN a Python where matplotlib cannot be imported (None in sys.modules makes `import` fail)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "drill"
    run = run_spotkit(capsys, "drill", "-n", "0", "--steps", "3", "--step-seconds", "0.05", "--checkpoint-every", "1",
                      "--notice-seconds", "2", "--no-aws", "--out", str(out))
    # THEN the drill completes (exit 0), said before it ran that no plot would be drawn, and wrote its JSON
    assert run.code == 0, run.err
    assert "Internal error" not in run.err
    note = run.err.index("note: matplotlib (the optional 'plot' extra) is not installed")
    assert note < run.err.index("drill: 0 interruptions"), "said before the drill starts, not after it ran"
    assert "pip install 'spotkit[plot]'" in run.out
    assert {"agent", "baseline"} <= set(json.loads((out / "drill.json").read_text()))
    assert not (out / "drill.png").exists()


def test_failed_init_names_the_provider_mirror_found_on_the_machine(capsys, tmp_path, monkeypatch):
    from spotkit.deploy import mirror

    found = mirror.discover()
    if found is None:
        pytest.skip(f"no provider mirror on this machine (looked in {', '.join(mirror.WELL_KNOWN_MIRRORS)})")
    # GIVEN a terraform whose init fails as it does without registry access, and no mirror configured
    fake = tmp_path / "terraform"
    fake.write_text('#!/bin/sh\nif [ "$1" = version ]; then echo "Terraform v1.11.4"; exit 0; fi\n'
                    'echo "Error: Failed to query available provider packages" >&2; exit 1\n')
    fake.chmod(0o755)
    monkeypatch.delenv(mirror.ENV_VAR, raising=False)
    run = run_spotkit(capsys, "plan", "training", "--target", "aws", "--terraform-bin", str(fake),
                      "--project-dir", str(tmp_path / "p"), "--provider-mirror", "none")
    # THEN the next step is the same plan with the mirror
    assert_user_error(run, "Failed to query available provider packages",
                      next_has="spotkit plan training --target aws --provider-mirror auto")
    assert run.next_lines[0].endswith(f"# uses the provider mirror on this machine ({found})")


def test_the_provider_mirror_on_the_machine_is_used_without_an_environment_variable(tmp_path, monkeypatch):
    from spotkit.deploy import mirror

    # GIVEN a mirror in a well-known place, and no option, variable or setting naming one (a user's shell)
    (tmp_path / "m" / mirror.REGISTRY_HOST / "hashicorp" / "aws").mkdir(parents=True)
    monkeypatch.setattr(mirror, "WELL_KNOWN_MIRRORS", ("/nonexistent/spotkit-mirror", str(tmp_path / "m")))
    monkeypatch.delenv(mirror.ENV_VAR, raising=False)
    # WHEN the mirror is resolved THEN it is the one found; 'none' still turns it off
    assert mirror.resolve() == tmp_path / "m"
    assert mirror.resolve(settings_value="none") is None
    assert mirror.resolve("none") is None


@pytest.mark.parametrize("config, expected, next_has", [
    ("settings:\n  bogus: 1\n", "settings.bogus: unknown setting", "backend, provider_mirror"),
    ("training:\n  group:\n    max_size: 100000000000\n",
     "training.group.max_size: 100000000000 is out of range: AWS takes whole numbers up to 2,147,483,647",
     "set max_size to the number you need"),
    ("training:\n  group:\n    instance_types: [g5.xlarge, not-a-type]\n",
     "training.group.instance_types[1]: 'not-a-type' is not an EC2 instance type", "describe-instance-types"),
], ids=["unknown-settings-key", "max-size", "instance-type"])
def test_config_values_refused_with_the_key_path(capsys, tmp_path, config, expected, next_has):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config)
    run = run_spotkit(capsys, "--config", str(cfg), "synth", "training", "--out", str(tmp_path / "o"))
    assert_user_error(run, expected, next_has=next_has)
    assert not list((tmp_path / "o").rglob("cdk.tf.json")), "refused before any stack was written"


# --- exit codes: usage errors 2, user errors 1, bugs 3 -------------------------------------------

def test_a_bug_exits_3_a_usage_error_2(capsys, monkeypatch):
    import spotkit.cli.stacks_cmd as stacks_cmd

    # GIVEN a command that fails with an unexpected exception (a bug)
    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(stacks_cmd, "table", broken)
    run = run_spotkit(capsys, "stacks")
    # THEN it is told apart from a usage error (click: 2) and a user error (1)
    assert run.code == 3, run.err
    assert "Internal error: RuntimeError: boom" in run.err
    assert run.next_lines == ["spotkit --debug stacks   # shows the traceback to report"]
    usage = run_spotkit(capsys, "synth", "--no-such-option")
    assert usage.code == 2 and "No such option" in usage.err


# --- optional extras ----------------------------------------------------------------------------

@pytest.mark.parametrize("module, argv, extra", [
    ("numpy", ["drill", "--no-aws", "-n", "0"], "demo"),
    ("moto", ["drill", "-n", "0"], "local"),
    ("moto", ["local", "start"], "local"),
    ("moto", ["demo"], "local"),
    ("numpy", ["simulate", "gpu_inference", "--trace", "t"], "simulate"),
], ids=["drill-numpy", "drill-moto", "local-moto", "demo-moto", "simulate-numpy"])
def test_a_command_without_its_extra_says_which_to_install(capsys, tmp_path, monkeypatch, module, argv, extra):
    import sys

    # GIVEN a Python where the extra's module cannot be imported (None in sys.modules makes `import` fail)
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.chdir(tmp_path)
    run = run_spotkit(capsys, *argv)
    # THEN one line names the extra, and nothing was started
    assert_user_error(run, f"needs the '{extra}' extra ({module} is not installed)",
                      next_has=f"pip install 'spotkit[{extra}]'")
    assert run.next_lines == [f"pip install 'spotkit[{extra}]'"]
    assert not (tmp_path / ".spotkit").exists()


def test_an_import_of_an_extras_module_anywhere_is_the_same_user_error():
    from spotkit.cli.main import user_error

    # GIVEN the error Python raises when numpy is missing deep inside a command
    mapped = user_error(ModuleNotFoundError("No module named 'numpy'", name="numpy"), ["drill"])
    assert mapped is not None and mapped.hint == "pip install 'spotkit[demo]'"
    assert user_error(ModuleNotFoundError("No module named 'x'", name="x"), ["drill"]) is None  # others: bugs


# --- Ctrl-C and the confirmation prompt ---------------------------------------------------------

@pytest.fixture()
def reclaimed_group(aws):
    """A group of two instances with retained data volumes, one of them reclaimed and replaced: `recover
    volumes` has one attach to do."""
    from tests.support.spot_group import SpotGroupWorld

    world = SpotGroupWorld.create(aws, size=2)
    lost, _ = world.instance_ids()
    world.interrupt(lost)
    return world


@pytest.mark.parametrize("answer", ["n\n", KeyboardInterrupt], ids=["no", "ctrl-c"])
def test_the_prompt_answered_no_or_ctrl_c_says_nothing_was_changed(capsys, monkeypatch, tmp_path, aws,
                                                                   reclaimed_group, answer):
    import io
    import sys

    class CtrlC(io.StringIO):
        def readline(self, *_):
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", io.StringIO(answer) if isinstance(answer, str) else CtrlC())
    journal = str(tmp_path / "j")
    run = run_spotkit(capsys, "--endpoint-url", aws.url, "recover", "volumes", "--group", "training",
                      "--journal-dir", journal)
    assert run.code == 1, run.err
    assert "Aborted at the confirmation prompt: nothing was changed." in run.err
    assert run.next_lines == [f"spotkit --endpoint-url {aws.url} recover volumes --group training --journal-dir "
                              f"{journal} --yes   # to go ahead without the prompt"]
    volumes = [v for v in reclaimed_group.all_volumes() if v["State"] == "available"]
    assert len(volumes) == 1, "the data volume is still waiting: nothing was attached"


def test_ctrl_c_while_working_says_what_was_and_was_not_done(capsys, monkeypatch):
    import spotkit.cli.stacks_cmd as stacks_cmd

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(stacks_cmd, "table", interrupted)
    run = run_spotkit(capsys, "stacks")
    assert run.code == 130
    assert "Interrupted (Ctrl-C) while working: what finished before stays done, the rest was not done." in run.err
    assert run.next_lines[0].startswith("spotkit stacks   # run it again")


# --- the runbook journal folder -----------------------------------------------------------------

def test_a_full_disk_under_the_journal_dir_is_a_user_error_naming_it(capsys, monkeypatch, tmp_path, aws,
                                                                     reclaimed_group):
    import errno

    from spotkit.runbooks import journal

    # GIVEN a disk that fills up when the runbook journals its first step
    def full(self, record):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.Journal, "_write", full)
    folder = tmp_path / "j"
    run = run_spotkit(capsys, "--endpoint-url", aws.url, "recover", "volumes", "--group", "training", "--yes",
                      "--journal-dir", str(folder))
    assert_user_error(run, f"the runbook journal cannot be written in {folder}", "(the disk is full)",
                      next_has=f"df -h {folder}")
    assert "--out" not in run.err


def test_an_unwritable_journal_dir_is_found_before_any_change(capsys, tmp_path, aws, reclaimed_group):
    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "journal"
    run = run_spotkit(capsys, "--endpoint-url", aws.url, "recover", "volumes", "--group", "training", "--yes",
                      "--journal-dir", str(folder))
    assert_user_error(run, f"the runbook journal cannot be written in {folder}", "is not a folder",
                      next_has="--journal-dir")
    assert "--out" not in run.err
    assert str(folder) not in run.next_lines[0], "the hint names another folder"
    volumes = [v for v in reclaimed_group.all_volumes() if v["State"] == "available"]
    assert len(volumes) == 1, "nothing was attached"


# --- regions, tags, construct errors, failed synth ----------------------------------------------

def test_an_unknown_region_option_is_refused_with_the_closest_and_the_list(capsys, monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    run = run_spotkit(capsys, "--region", "eu-wst-1", "status", "--group", "g")
    assert_user_error(run, "--region: 'eu-wst-1' is not an AWS region (did you mean 'eu-west-1'",
                      next_has="spotkit --region eu-west-1 status --group g   # the closest region; use one of: ")
    assert "us-east-1" in run.next_lines[0] and "ap-southeast-2" in run.next_lines[0]
    monkeypatch.setenv("AWS_REGION", "us-est-2")
    run = run_spotkit(capsys, "status", "--group", "g")
    assert_user_error(run, "AWS_REGION: 'us-est-2' is not an AWS region", next_has="export AWS_REGION=")


@pytest.mark.parametrize("config, expected", [
    ("training:\n  region: us-est-1\n", "training.region: 'us-est-1' is not an AWS region (did you mean"),
    ("training:\n  tags:\n    owner: " + "x" * 257 + "\n",
     "the value of tag 'owner' is 257 characters; AWS allows at most 256 in a tag value"),
    ("training:\n  tags:\n    " + "k" * 129 + ": v\n", "is 129 characters; AWS allows at most 128 in a tag key"),
    ("training:\n  group:\n    tags:\n      Cost Center: ml\n",
     "tag key 'Cost Center' cannot be read from the instance metadata"),
    ("training:\n  tags:\n    owner: 1\n", "training.tags.owner: expected a string, got 1"),
    ("training:\n  group:\n    min_size: 5\n    max_size: 2\n", "min_size (5) is greater than max_size (2)"),
], ids=["region", "tag-value", "tag-key", "metadata-tag-key", "tag-type", "construct"])
def test_bad_stack_settings_fail_at_synth_with_a_next_step_and_leave_no_output(capsys, tmp_path, config, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config)
    out = tmp_path / "out"
    run = run_spotkit(capsys, "--config", str(cfg), "synth", "training", "--out", str(out), "--no-cache")
    rerun = f"spotkit --config {cfg} synth training --out {out} --no-cache   # again, after fixing what the message names"
    assert_user_error(run, expected, next_has="use one of: af-south-1" if "region" in config else rerun)
    # THEN a failed synth leaves no (empty) output folder behind
    assert not out.exists()


def test_a_failed_synth_keeps_what_the_output_folder_held(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("training:\n  group:\n    min_size: 5\n    max_size: 2\n")
    out = tmp_path / "out"
    (out / "stacks" / "mine").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    run = run_spotkit(capsys, "--config", str(cfg), "synth", "training", "--out", str(out), "--no-cache")
    assert run.code == 1
    assert (out / "keep.txt").read_text() == "mine" and (out / "stacks" / "mine").is_dir()
    assert not (out / "stacks" / "training").exists()


def test_interrupt_hints_name_the_group_not_a_placeholder():
    from spotkit.errors import ToolkitError
    from spotkit.interrupt import choose

    with pytest.raises(ToolkitError) as caught:
        choose([], group="training")
    assert caught.value.hint == "spotkit status --group training"
    with pytest.raises(ToolkitError) as caught:
        choose(["i-1"], count=2, group="training")
    assert caught.value.hint == "spotkit interrupt --group training --count 1"
