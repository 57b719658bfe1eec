"""toolkit/runtime/notice.py: one identity and one time parser for the agent, the handler and the journal.

The parser runs on the instance's Python too (Amazon Linux 2023: 3.9), so the time formats are checked
under every Python pyenv has here (3.9 and 3.11 at least), each in a fresh interpreter with ``-I -S``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spotkit.runtime import notice

ROOT = Path(__file__).resolve().parents[1]

# (text, expected UTC) pairs AWS and its mocks actually write, plus the offset forms.
TIMES = [
    ("2026-11-29T19:07:00Z", "2026-11-29T19:07:00+00:00"),
    ("2026-11-29T19:07:00.123456789Z", "2026-11-29T19:07:00.123456+00:00"),
    ("2026-11-29T19:07:00.1Z", "2026-11-29T19:07:00.100000+00:00"),
    ("2026-11-29T19:07:00+00:00", "2026-11-29T19:07:00+00:00"),
    ("2026-11-29T19:07:00+0000", "2026-11-29T19:07:00+00:00"),
    ("2026-11-29T21:07:00+02:00", "2026-11-29T19:07:00+00:00"),
    ("2026-11-29T14:07:00-0500", "2026-11-29T19:07:00+00:00"),
    ("2026-11-29T19:07:00", "2026-11-29T19:07:00+00:00"),           # naive = UTC, never local time
    ("2026-11-29 19:07:00.5", "2026-11-29T19:07:00.500000+00:00"),
    ("29 Nov 2026 19:07:00 GMT", "2026-11-29T19:07:00+00:00"),      # IMDS maintenance NotBefore
    ("Sun, 29 Nov 2026 19:07:00 GMT", "2026-11-29T19:07:00+00:00"),  # AWS Health
]
BAD = [None, 12345, 7.5, "", "soon", "2026-13-01T00:00:00Z", "2026-11-29T19:07:00+25:00", ["x"]]

_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import notice
out = {}
for text in json.loads(sys.argv[2]):
    out[text] = notice.parse_time(text).isoformat()
bad = []
for value in json.loads(sys.argv[3]):
    try:
        notice.parse_time(value)
        bad.append(value)
    except notice.TimeFormatError:
        pass
print(json.dumps({"parsed": out, "accepted_bad": bad, "version": sys.version_info[:2]}))
"""


def _pythons() -> list[tuple[str, list[str], dict]]:
    found = [("current", ["python3"], {})]
    if shutil.which("pyenv"):
        versions = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout.split()
        for want in ("3.9", "3.11"):
            match = [v for v in versions if v.startswith(want + ".")]
            if match:
                found.append((want, [f"python{want}"], {"PYENV_VERSION": match[0]}))
    return found


@pytest.mark.parametrize("text, expected", TIMES)
def test_every_aws_time_format_reads_as_utc(text, expected):
    assert notice.parse_time(text).isoformat() == expected


@pytest.mark.parametrize("value", BAD)
def test_unreadable_times_raise_the_module_error(value):
    with pytest.raises(notice.TimeFormatError, match="time"):
        notice.parse_time(value)
    assert notice.try_parse_time(value) is None


def test_time_formats_agree_on_every_python_the_instance_may_have(tmp_path):
    # The module is copied alone into a folder, as the agent artifact ships it: no package, no site.
    shutil.copy(ROOT / "toolkit" / "runtime" / "notice.py", tmp_path / "notice.py")
    ran = []
    for label, cmd, extra in _pythons():
        env = {**os.environ, **extra}
        res = subprocess.run([*cmd, "-I", "-S", "-c", _PROBE, str(tmp_path), json.dumps([t for t, _ in TIMES]),
                              json.dumps([b for b in BAD if not isinstance(b, float)])],
                             capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0, f"{label}: {res.stderr}"
        out = json.loads(res.stdout)
        assert out["parsed"] == {t: e for t, e in TIMES}, label
        assert out["accepted_bad"] == [], label
        ran.append(tuple(out["version"]))
    if shutil.which("pyenv"):
        assert [3, 9] in [list(v) for v in ran], f"Python 3.9 (AL2023's) was not exercised: {ran}"


def test_naive_datetime_is_utc_and_aware_is_converted():
    naive = datetime(2026, 11, 29, 19, 7)
    assert notice.parse_time(naive) == naive.replace(tzinfo=timezone.utc)
    paris = datetime(2026, 11, 29, 20, 7, tzinfo=timezone(timedelta(hours=1)))
    assert notice.format_time(paris) == "2026-11-29T19:07:00Z"


def test_a_persistent_instance_interrupted_again_hours_later_is_a_new_notice():
    first = notice.parse_time("2026-11-29T10:02:00Z")
    second = first + timedelta(hours=3)
    a = notice.notice_id(notice.SPOT_INTERRUPTION, "i-1", notice.spot_key("stop", first))
    b = notice.notice_id(notice.SPOT_INTERRUPTION, "i-1", notice.spot_key("stop", second))
    assert a != b


def test_the_eventbridge_and_imds_views_of_one_spot_notice_share_an_id():
    sent = notice.parse_time("2026-11-29T10:02:03Z")               # EventBridge envelope time
    imds_time = notice.parse_time("2026-11-29T10:04:05Z")          # IMDS instance-action time, ~120 s on
    from_events = notice.spot_key("terminate", notice.spot_deadline_from_warning(sent))
    from_imds = notice.spot_key("terminate", imds_time)
    assert notice.notice_id(notice.SPOT_INTERRUPTION, "i-1", from_events) == \
        notice.notice_id(notice.SPOT_INTERRUPTION, "i-1", from_imds)


def test_a_moving_rebalance_notice_time_keeps_one_identity_per_boot():
    ids = {notice.notice_id(notice.REBALANCE_RECOMMENDATION, "i-1", notice.rebalance_key("boot-a"))
           for _ in range(3)}
    assert len(ids) == 1
    assert notice.notice_id(notice.REBALANCE_RECOMMENDATION, "i-1", notice.rebalance_key("boot-b")) not in ids


def test_ids_name_kind_and_instance():
    nid = notice.notice_id(notice.SPOT_INTERRUPTION, "i-0abc", "terminate|x")
    kind, instance, digest = nid.split(":")
    assert (kind, instance, len(digest)) == (notice.SPOT_INTERRUPTION, "i-0abc", 12)
