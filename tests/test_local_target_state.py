"""The local target knows which emulator its state was written against, however the endpoint was given."""

from __future__ import annotations

import json

import pytest

from spotkit.deploy import workflow
from spotkit.deploy.workflow import DeployOptions
from spotkit.errors import ToolkitError
from spotkit.rehearsal.local import emulator


def test_an_endpoint_given_directly_is_identified_and_a_reset_changes_its_id(aws, tmp_path):
    # GIVEN an emulator this project did not start, named by --endpoint-url (what the demo does)
    opts = DeployOptions(project=tmp_path, target="local", endpoint_url=aws.url + "/")
    url, first = workflow.local_endpoint(opts)
    # THEN it still has an id, stable while the emulator keeps its data
    assert url == aws.url
    assert first and workflow.local_endpoint(opts)[1] == first
    # WHEN the emulator loses its data (as after a restart) THEN the id changes
    aws.reset()
    assert workflow.local_endpoint(opts)[1] != first


def test_the_projects_own_emulator_is_known_by_its_recorded_id_with_or_without_the_endpoint(tmp_path):
    from tests.support.network import free_port

    state, started = emulator.start(tmp_path, port=free_port())
    try:
        assert started
        by_project = workflow.local_endpoint(DeployOptions(project=tmp_path, target="local"))
        by_url = workflow.local_endpoint(DeployOptions(project=tmp_path, target="local", endpoint_url=state.url))
        assert by_project == by_url == (state.url, state.instance_id)
    finally:
        emulator.stop(tmp_path)


def test_an_endpoint_that_does_not_answer_is_a_user_error(tmp_path):
    from tests.support.network import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ToolkitError) as err:
        workflow.local_endpoint(DeployOptions(project=tmp_path, target="local", endpoint_url=url))
    assert f"the emulator at {url} does not answer" in err.value.message
    assert "spotkit local start" in err.value.hint


def _workdir(tmp_path, marker: str | None):
    (tmp_path / "terraform.tfstate").write_text(json.dumps({"serial": 7}))
    if marker is not None:
        (tmp_path / workflow.EMULATOR_ID_FILE).write_text(marker)
    return tmp_path


@pytest.mark.parametrize("previous", ["aaa", None], ids=["other-emulator", "no-record"])
def test_state_of_another_or_an_unknown_emulator_is_set_aside(tmp_path, previous):
    path = _workdir(tmp_path, previous)
    moved = workflow._set_aside_stale_state(path, "bbb")
    assert moved == path / f"terraform.tfstate.emulator-{previous or 'unknown'}"
    assert json.loads(moved.read_text()) == {"serial": 7}, "set aside, never deleted"
    assert not (path / "terraform.tfstate").exists()
    assert (path / workflow.EMULATOR_ID_FILE).read_text() == "bbb"


def test_state_of_the_same_emulator_stays(tmp_path):
    path = _workdir(tmp_path, "bbb")
    assert workflow._set_aside_stale_state(path, "bbb") is None
    assert (path / "terraform.tfstate").is_file()


def test_setting_aside_twice_keeps_both_old_states(tmp_path):
    path = _workdir(tmp_path, "aaa")
    first = workflow._set_aside_stale_state(path, "bbb")
    (path / "terraform.tfstate").write_text("{}")
    (path / workflow.EMULATOR_ID_FILE).write_text("aaa")
    second = workflow._set_aside_stale_state(path, "ccc")
    assert first != second and first.is_file() and second.is_file()
