"""Config files: overrides of frozen dataclasses, errors that name the key."""

from __future__ import annotations

import pytest

from stacks.training import TrainingConfig
from toolkit.config import apply_overrides, read_config_file
from toolkit.errors import ConfigError


def test_nested_override_keeps_other_defaults():
    # GIVEN the training defaults WHEN only max_size and the types change
    cfg = apply_overrides(TrainingConfig(), {"group": {"max_size": 8, "instance_types": ["g5.xlarge", "g6.xlarge"]}})
    # THEN those change and everything else keeps its default
    assert cfg.group.max_size == 8
    assert cfg.group.instance_types == ("g5.xlarge", "g6.xlarge")
    assert cfg.group.capacity_rebalance is True
    assert cfg.network.az_count == 2


def test_unknown_key_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainingConfig(), {"group": {"max_sise": 3}}, prefix="training")
    assert str(err.value).startswith("training.group.max_sise: unknown setting (did you mean 'max_size'")
    assert "max_size" in err.value.hint


def test_wrong_type_names_the_key_and_expectation():
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainingConfig(), {"group": {"max_size": "lots"}}, prefix="training")
    assert str(err.value) == "training.group.max_size: expected a whole number, got 'lots'"


def test_bool_is_not_a_number():
    with pytest.raises(ConfigError, match=r"training.group.capacity_rebalance: expected true or false, got 'yes'"):
        apply_overrides(TrainingConfig(), {"group": {"capacity_rebalance": "yes"}}, prefix="training")


def test_list_items_are_checked():
    with pytest.raises(ConfigError, match=r"training.group.instance_types\[1\]: expected a string, got 3"):
        apply_overrides(TrainingConfig(), {"group": {"instance_types": ["m5.large", 3]}}, prefix="training")


def test_yaml_and_toml_files(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("training:\n  group:\n    max_size: 6\n")
    t = tmp_path / "c.toml"
    t.write_text("[training.group]\nmax_size = 6\n")
    assert read_config_file(y) == read_config_file(t) == {"training": {"group": {"max_size": 6}}}


def test_syntax_error_and_missing_file(tmp_path):
    broken = tmp_path / "c.yaml"
    broken.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid yaml"):
        read_config_file(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("- training\n")
    with pytest.raises(ConfigError, match="must hold a mapping of stack names to settings, not a list"):
        read_config_file(f)
