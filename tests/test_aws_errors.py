"""botocore failures the user can act on map to AwsCallError (message + next step); spotkit's own bugs do not."""

from __future__ import annotations

from botocore.exceptions import ClientError, NoRegionError, ParamValidationError, ProfileNotFound

from spotkit.aws import user_error


def _client_error(code: str, op: str = "DescribeInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} says no"}}, op)


def test_refusals_name_the_code_the_call_and_the_fix():
    creds = user_error(_client_error("AuthFailure"))
    assert creds.message == "AWS refused the credentials (AuthFailure on DescribeInstances): AuthFailure says no"
    assert "aws sts get-caller-identity" in creds.hint
    denied = user_error(_client_error("UnauthorizedOperation", "AttachVolume"))
    assert denied.message.startswith("not allowed: AttachVolume (UnauthorizedOperation)")
    assert "permission for AttachVolume" in denied.hint
    other = user_error(_client_error("InvalidVolume.NotFound", "AttachVolume"))
    assert other.message == "AWS refused AttachVolume (InvalidVolume.NotFound): InvalidVolume.NotFound says no"


def test_profile_and_region():
    assert "--profile" in user_error(ProfileNotFound(profile="nope")).hint
    assert user_error(NoRegionError()).hint == "pass --region us-east-1 (or set AWS_REGION)"


def test_a_bad_call_of_spotkits_own_stays_a_bug():
    assert user_error(ParamValidationError(report="Missing required parameter")) is None
    assert user_error(KeyError("x")) is None
