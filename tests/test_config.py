"""Config files: overrides of frozen dataclasses, errors that name the key."""

from __future__ import annotations

import pytest

from spotkit.stacks.training import TrainingConfig
from spotkit.config import apply_overrides, read_config_file
from spotkit.errors import ConfigError


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


def test_unknown_and_misspelled_settings_keys_are_refused(tmp_path):
    from spotkit.config import check_settings

    with pytest.raises(ConfigError) as err:
        check_settings({"bogus": 1})
    assert str(err.value) == "settings.bogus: unknown setting"
    assert err.value.hint == "settings of settings are: backend, provider_mirror"
    f = tmp_path / "c.yaml"
    f.write_text("settings:\n  provider_mirro: auto\n")
    with pytest.raises(ConfigError, match=r"settings.provider_mirro: unknown setting \(did you mean 'provider_mirror'\?\)"):
        read_config_file(f)
    with pytest.raises(ConfigError, match=r"settings.backend.buckt: unknown setting \(did you mean 'bucket'\?\)"):
        check_settings({"backend": {"type": "s3", "buckt": "b"}})
    assert check_settings({"provider_mirror": "auto", "backend": {"type": "s3", "bucket": "b"}})


def test_backend_key_placeholders():
    from spotkit.config import backend_key

    assert backend_key("spotkit/{stack}.tfstate", "training") == "spotkit/training.tfstate"
    with pytest.raises(ConfigError, match=r"unknown placeholder \{name\}"):
        backend_key("spotkit/{name}.tfstate", "training")
    with pytest.raises(ConfigError, match="is not a valid template"):
        backend_key("spotkit/{stack.tfstate", "training")


def test_impossible_sizes_are_refused_with_the_aws_bound():
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainingConfig(), {"group": {"max_size": 100000000000}}, prefix="training")
    assert str(err.value).startswith("training.group.max_size: 100000000000 is out of range: AWS takes whole numbers "
                                     "up to 2,147,483,647")
    assert apply_overrides(TrainingConfig(), {"group": {"max_size": 2147483647}}).group.max_size == 2147483647


def test_instance_types_are_checked_against_the_shipped_table():
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainingConfig(), {"group": {"instance_types": ["g5.xlarge", "not-a-type"]}}, prefix="training")
    assert str(err.value).startswith("training.group.instance_types[1]: 'not-a-type' is not an EC2 instance type")
    with pytest.raises(ConfigError, match=r"'g5.xlarg' is not an EC2 instance type \(close: g5.xlarge"):
        apply_overrides(TrainingConfig(), {"group": {"instance_types": ["g5.xlarg", "g6.xlarge"]}}, prefix="training")
    cfg = apply_overrides(TrainingConfig(), {"group": {"instance_types": ["g5.xlarge", "g6.xlarge"]}})
    assert cfg.group.instance_types == ("g5.xlarge", "g6.xlarge")


@pytest.mark.parametrize("name, text, key, lines", [
    ("c.yaml", "training:\n  name: a\ntraining:\n  name: b\n", "training", " on line 3 (first on line 1)"),
    ("c.yaml", "training:\n  group:\n    max_size: 3\n    max_size: 4\n", "max_size", " on line 4 (first on line 3)"),
    ("c.json", '{"training": {"name": "a", "name": "b"}}', "name", ""),
], ids=["yaml-top", "yaml-nested", "json"])
def test_a_key_given_twice_is_refused_with_its_name_and_line(tmp_path, name, text, key, lines):
    # GIVEN a config file where a later key would silently replace an earlier one
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert caught.value.message == f"config file {str(path)!r}: the key {key!r} is given twice{lines}"
    assert caught.value.hint == f"keep one {key!r} in {path}: the second would replace the first"


def test_yaml_anchors_and_merge_keys_still_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {max_size: 3}\ntraining:\n  group:\n    <<: *b\n    min_size: 1\n")
    assert read_config_file(path)["training"] == {"group": {"max_size": 3, "min_size": 1}}


def test_regions_are_checked_in_stack_configs_and_the_backend():
    from spotkit.config import check_settings

    assert apply_overrides(TrainingConfig(), {"region": "eu-west-1"}).region == "eu-west-1"
    assert apply_overrides(TrainingConfig(), {"region": "cn-north-1"}).region == "cn-north-1"  # other partitions
    with pytest.raises(ConfigError, match=r"^region: 'eu-wst-1' is not an AWS region \(did you mean 'eu-west-1'"):
        apply_overrides(TrainingConfig(), {"region": "eu-wst-1"})
    with pytest.raises(ConfigError, match=r"^settings.backend.region: 'mars-1' is not an AWS region$"):
        check_settings({"backend": {"type": "s3", "bucket": "b", "region": "mars-1"}})
