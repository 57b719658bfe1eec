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


def test_the_next_steps_are_one_command_with_the_users_own_values():
    # GIVEN the command line that failed, with the profile it used
    command = "spotkit --profile dev status --group training"
    # WHEN credentials, a permission, another refusal and a missing profile are mapped
    creds = user_error(_client_error("ExpiredToken"), command=command)
    denied = user_error(_client_error("AccessDenied", "AttachVolume"), command=command)
    other = user_error(_client_error("InvalidVolume.NotFound", "AttachVolume"), command=command)
    profile = user_error(ProfileNotFound(profile="nope"))
    # THEN each next step is a command to paste, with that profile and that command line
    assert creds.hint == ("aws sts get-caller-identity --profile dev   # who AWS takes these credentials for: fix them "
                          "('aws configure', or another --profile), then run the command again")
    assert denied.hint == ("aws sts get-caller-identity --profile dev   # the identity that needs permission for "
                           "AttachVolume: grant it, or run as a role that has it")
    assert other.hint == ("spotkit --debug --profile dev status --group training   # shows the failed call; fix what "
                          "the message names, then run it again")
    assert profile.hint == "aws configure list-profiles   # the profiles there: pass one of them as --profile"
