"""Every bad input or broken environment is a user error: exit 1, a plain message and a ``next:`` step,
never "Internal error ... report it" (exit 2). Each case runs the real entry point."""

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
    assert_user_error(run, f"could not connect to {url}", "the local emulator is not answering",
                      next_has=f"spotkit local start && spotkit --endpoint-url {url} status")


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
    assert_user_error(run, "the local emulator stopped?", next_has="spotkit local start && spotkit --endpoint-url")
    assert run.next_lines[0].endswith("recover volumes --group training --dry-run   # runbooks resume from their journal")


def test_non_utf8_config_file(capsys, tmp_path):
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_bytes("training:\n  name: caf\xe9\n".encode("latin-1"))
    run = run_spotkit(capsys, "--config", str(cfg), "synth", "training", "--out", str(tmp_path / "out"))
    assert_user_error(run, "is not UTF-8 text (byte 0xe9", next_has="save it as UTF-8")


def test_out_in_an_unwritable_place(capsys):
    run = run_spotkit(capsys, "synth", "training", "--out", "/proc/foo")
    assert_user_error(run, "cannot use the path /proc/foo", next_has="a folder you can write to")


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
    from toolkit.deploy import mirror

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
    from toolkit.deploy import mirror

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
