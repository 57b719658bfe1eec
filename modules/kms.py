"""KMS keys given by id, alias or ARN, resolved to the key ARN that IAM statements need.

IAM authorizes KMS calls against the key's ARN: an alias, an alias ARN or a bare key id in a policy's
``Resource`` matches nothing, and widening to ``*`` would grant every key in the account. So a key given any
other way than its key ARN is looked up at plan time with ``data "aws_kms_key"`` (which accepts a key id,
key ARN, alias name or alias ARN) and the statement names the ARN it returns.
"""

from __future__ import annotations

import re

from constructs import Construct

_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[^:]+:[^:]+:key/[^/]+$")


def is_key_arn(key: str) -> bool:
    """True for ``arn:<partition>:kms:<region>:<account>:key/<id>`` (not an alias ARN)."""
    return bool(_KEY_ARN.match(key))


def key_arn(scope: Construct, id_: str, key: str) -> str:
    """``key`` itself when it is a key ARN, else the ARN of ``data "aws_kms_key" "<id_>"`` looked up by it."""
    if is_key_arn(key):
        return key
    from cdktn_aws.kms import DataAwsKey as DataAwsKmsKey

    return DataAwsKmsKey(scope, id_, key_id=key).arn
