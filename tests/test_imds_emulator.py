"""The IMDS emulator speaks the real paths, formats and status codes (over HTTP, with requests)."""

from __future__ import annotations

import json

import pytest
import requests

from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator

MD = "/latest/meta-data"


@pytest.fixture()
def emu():
    with ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as e:
        yield e


def token(emu, ttl="60"):
    resp = requests.put(f"{emu.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl}, timeout=5)
    assert resp.status_code == 200
    return resp.text


def get(emu, path, tok=None):
    headers = {"X-aws-ec2-metadata-token": tok} if tok else {}
    return requests.get(f"{emu.url}{path}", headers=headers, timeout=5)


def test_token_put_enforces_the_ttl_header_and_refuses_forwarded_requests(emu):
    # GIVEN the emulator WHEN a token is asked without a TTL, with TTL 0, 21601, or through a proxy
    url = f"{emu.url}/latest/api/token"
    no_ttl = requests.put(url, timeout=5)
    zero = requests.put(url, headers={"X-aws-ec2-metadata-token-ttl-seconds": "0"}, timeout=5)
    too_long = requests.put(url, headers={"X-aws-ec2-metadata-token-ttl-seconds": "21601"}, timeout=5)
    proxied = requests.put(url, headers={"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.2.3.4"},
                           timeout=5)
    ok = requests.put(url, headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, timeout=5)
    # THEN only the valid request gets a token, echoing its TTL, like AWS
    assert [no_ttl.status_code, zero.status_code, too_long.status_code, proxied.status_code] == [400, 400, 400, 403]
    assert ok.status_code == 200 and len(ok.text) > 20
    assert ok.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "21600"


def test_imdsv2_required_answers_401_without_or_with_a_bad_token(emu):
    # GIVEN IMDSv2 required WHEN reading the instance id without a token, with a bogus one, with a real one
    assert get(emu, f"{MD}/instance-id").status_code == 401
    assert get(emu, f"{MD}/instance-id", "bogus").status_code == 401
    resp = get(emu, f"{MD}/instance-id", token(emu))
    # THEN only the real token is served, and the refusals are counted
    assert (resp.status_code, resp.text) == (200, "i-0123456789abcdef0")
    assert emu.counters()["unauthorized"] == 2


def test_expired_token_is_refused():
    # GIVEN a token with a 1 s TTL on an emulator whose token clock the test moves
    now = [1000.0]
    with ImdsEmulator(EmulatorSettings(imdsv2_required=True), token_clock=lambda: now[0]) as emu:
        tok = token(emu, "1")
        # WHEN the clock is just short of its expiry THEN it is served
        now[0] += 0.999
        assert get(emu, f"{MD}/instance-id", tok).status_code == 200
        # WHEN its second is up THEN the same token is refused
        now[0] += 0.001
        assert get(emu, f"{MD}/instance-id", tok).status_code == 401


def test_identity_placement_and_tags(emu):
    tok = token(emu)
    # GIVEN default settings WHEN reading identity paths THEN the values of the emulated instance come back
    assert get(emu, f"{MD}/placement/availability-zone", tok).text == "us-east-1a"
    assert get(emu, f"{MD}/placement/region", tok).text == "us-east-1"
    assert get(emu, f"{MD}/instance-type", tok).text == "m6i.large"
    assert get(emu, f"{MD}/tags/instance", tok).text.split("\n") == ["aws:autoscaling:groupName", "spotkit:group"]
    assert get(emu, f"{MD}/tags/instance/aws:autoscaling:groupName", tok).text == "spotkit-training"
    assert get(emu, f"{MD}/tags/instance/missing", tok).status_code == 404


def test_notice_paths_are_404_or_quiet_until_an_interruption(emu):
    tok = token(emu)
    # GIVEN no notice THEN spot and rebalance are 404, the lifecycle state InService, no maintenance events
    assert get(emu, f"{MD}/spot/instance-action", tok).status_code == 404
    assert get(emu, f"{MD}/spot/termination-time", tok).status_code == 404
    assert get(emu, f"{MD}/events/recommendations/rebalance", tok).status_code == 404
    assert get(emu, f"{MD}/autoscaling/target-lifecycle-state", tok).text == "InService"
    assert get(emu, f"{MD}/events/maintenance/scheduled", tok).json() == []


def test_control_api_triggers_each_notice_in_the_real_format(emu):
    tok = token(emu)
    # WHEN each kind of notice is triggered through the control API
    spot = requests.post(f"{emu.url}/spotkit/interrupt", json={"kind": "spot", "action": "hibernate",
                                                               "lead_seconds": 120}, timeout=5).json()
    requests.post(f"{emu.url}/spotkit/interrupt", json={"kind": "rebalance"}, timeout=5).raise_for_status()
    requests.post(f"{emu.url}/spotkit/interrupt", json={"kind": "lifecycle"}, timeout=5).raise_for_status()
    requests.post(f"{emu.url}/spotkit/interrupt", json={"kind": "scheduled"}, timeout=5).raise_for_status()
    # THEN the real paths serve them in the AWS formats
    action = get(emu, f"{MD}/spot/instance-action", tok).json()
    assert action == {"action": "hibernate", "time": spot["time"]}
    assert set(get(emu, f"{MD}/events/recommendations/rebalance", tok).json()) == {"noticeTime"}
    assert get(emu, f"{MD}/autoscaling/target-lifecycle-state", tok).text == "Terminated"
    [event] = get(emu, f"{MD}/events/maintenance/scheduled", tok).json()
    assert event["Code"] == "system-reboot" and event["State"] == "active"
    assert event["NotBefore"].endswith(" GMT")
    # termination-time is only for a terminate action
    assert get(emu, f"{MD}/spot/termination-time", tok).status_code == 404
    # AND a reset clears them
    requests.post(f"{emu.url}/spotkit/reset", timeout=5).raise_for_status()
    assert get(emu, f"{MD}/spot/instance-action", token(emu)).status_code == 404


def test_control_api_rejects_an_unknown_kind(emu):
    resp = requests.post(f"{emu.url}/spotkit/interrupt", json={"kind": "meteor"}, timeout=5)
    assert resp.status_code == 400
    assert resp.json() == {"error": "kind must be one of spot, rebalance, lifecycle, scheduled"}


def test_spot_delay_makes_the_notice_appear_later():
    # GIVEN a spot notice due 3600 s after start WHEN read now THEN 404; the state lists it as pending
    with ImdsEmulator(EmulatorSettings(spot_delay=3600)) as emu:
        assert get(emu, f"{MD}/spot/instance-action").status_code == 404
        state = requests.get(f"{emu.url}/spotkit/state", timeout=5).json()
        assert state["notices"]["spot"]["action"] == "terminate"


def test_outage_drops_connections_then_recovers(emu):
    # GIVEN an outage of 2 dropped requests and 1 error request
    requests.post(f"{emu.url}/spotkit/outage", json={"requests": 2, "mode": "drop"}, timeout=5).raise_for_status()
    # THEN the next two requests fail at the connection level, the third works
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            requests.put(f"{emu.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                         timeout=5)
    token(emu)
    requests.post(f"{emu.url}/spotkit/outage", json={"requests": 1, "mode": "500"}, timeout=5).raise_for_status()
    assert get(emu, f"{MD}/instance-id").status_code == 500
    assert emu.counters()["dropped"] == 2 and emu.counters()["errors"] == 1


def test_bad_spot_action_is_refused_at_construction():
    with pytest.raises(ValueError) as err:
        EmulatorSettings(spot_action="explode")
    assert str(err.value) == "spot_action must be one of terminate, stop, hibernate (got 'explode')"
