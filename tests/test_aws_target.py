"""AwsTarget: clients for AWS or the local emulator."""

from __future__ import annotations

import pytest

from spotkit.aws import AwsTarget, is_loopback


@pytest.fixture()
def no_credentials(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_loopback_emulator_gets_test_credentials_when_none_are_configured(aws, no_credentials):
    # GIVEN no credentials anywhere WHEN a client points at the emulator on 127.0.0.1
    ec2 = AwsTarget(region="us-east-1", endpoint_url=aws.url).client("ec2")
    # THEN calls go through (moto accepts any key)
    assert ec2.describe_volumes()["Volumes"] == []


def test_real_endpoints_never_get_test_credentials(no_credentials):
    ec2 = AwsTarget(region="us-east-1", endpoint_url="https://ec2.us-east-1.amazonaws.com").client("ec2")
    assert ec2._request_signer._credentials is None


def test_configured_credentials_win_over_test_ones(monkeypatch, aws):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    ec2 = AwsTarget(region="us-east-1", endpoint_url=aws.url).client("ec2")
    assert ec2._request_signer._credentials.access_key == "AKIAREAL"


@pytest.mark.parametrize("url, loop", [("http://127.0.0.1:4566", True), ("http://localhost:4566", True),
                                       ("http://[::1]:4566", True), ("https://ec2.amazonaws.com", False),
                                       ("http://10.0.0.5:4566", False)])
def test_is_loopback(url, loop):
    assert is_loopback(url) is loop
