"""Tests for config flags: defaults, help text, precedence, bad values."""

import dataclasses

import pytest
from absl import flags

from fsr_fer_tf import configs
from fsr_fer_tf import errors
from fsr_fer_tf import flag_utils


@pytest.fixture()
def fv():
    values = flags.FlagValues()
    names = flag_utils.define_config_flags(
        configs.FER_TRAIN_PRESETS["paper"], flag_values=values
    )
    flag_utils.define_override_flags(flag_values=values)
    return values, names


def test_every_field_has_help_and_paper_default(fv):
    values, names = fv
    paper = configs.FER_TRAIN_PRESETS["paper"]
    assert set(names) == {f.name for f in dataclasses.fields(paper)}
    for name in names:
        default = getattr(paper, name)
        if name in type(paper).LIST_FIELDS:  # a tuple inside, text as a flag
            default = configs.list_text(default)
        assert values[name].default == default
        assert len(values[name].help) > 20
    assert values["learning_rate_schedule"].default == (
        "0:0.1,120:0.01,240:0.001,500:0.0001"
    )
    assert values["adam_epsilon"].help.startswith("Adam's epsilon")
    # Multi-line docstring entries are joined into one help line.
    assert "0 disables it" in values["center_loss_weight"].help


def test_precedence_preset_file_override_flag(fv, tmp_path):
    values, names = fv
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 16\nepochs: 3\nseed: 4\n")
    values(
        [
            "prog",
            f"--config_file={cfg}",
            "--params_override=epochs=5,seed=6",
            "--seed=7",
        ]
    )
    demo = configs.FER_TRAIN_PRESETS["demo"]
    out = flag_utils.resolve_config(demo, names, values)
    assert (out.batch_size, out.epochs, out.seed) == (16, 5, 7)
    # Untouched fields keep the preset's (demo) values, not the flag defaults.
    assert out.weight_decay == demo.weight_decay != values.weight_decay


def test_bad_overrides_are_config_errors(fv):
    values, names = fv
    values(["prog", "--params_override=nonsense_field=1"])
    with pytest.raises(errors.ConfigError, match="nonsense_field"):
        flag_utils.resolve_config(configs.FERTrainConfig(), names, values)
    values2 = flags.FlagValues()
    names2 = flag_utils.define_config_flags(
        configs.FERTrainConfig(), flag_values=values2
    )
    flag_utils.define_override_flags(flag_values=values2)
    values2(["prog", "--params_override=batch_size=abc"])
    with pytest.raises(errors.ConfigError, match="batch_size must be a int"):
        flag_utils.resolve_config(configs.FERTrainConfig(), names2, values2)


def test_every_training_config_field_is_documented():
    for cls in (
        configs.FERTrainConfig,
        configs.FSRTrainConfig,
        configs.DataConfig,
        configs.CovPoolFERConfig,
        configs.GeneratorConfig,
        configs.CriticConfig,
    ):
        docs = flag_utils.attribute_docs(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(docs) == names, cls.__name__


def test_prefixed_flags_resolve_without_prefix():
    values = flags.FlagValues()
    names = flag_utils.define_config_flags(
        configs.GeneratorConfig(), flag_values=values, prefix="g_"
    )
    assert "g_filters" in names and "filters" not in names
    values(["prog", "--g_filters=8", "--g_use_batch_norm"])
    out = flag_utils.resolve_config(
        configs.GENERATOR_PRESETS["demo"],
        names,
        values,
        prefix="g_",
        use_overrides=False,
    )
    assert (out.filters, out.use_batch_norm) == (8, True)
    assert out.num_blocks == configs.GENERATOR_PRESETS["demo"].num_blocks


def test_data_config_from_params_round_trip_and_moved_synthetic_cache(
    tmp_path,
):
    import dataclasses

    cfg = configs.DataConfig(data_format="folder", data_dir=str(tmp_path))
    assert configs.data_config_from_params(dataclasses.asdict(cfg)) == cfg
    gone = configs.DataConfig(data_dir=str(tmp_path / "moved"))
    assert (
        configs.data_config_from_params(dataclasses.asdict(gone)).data_dir
        is None
    )
    with pytest.raises(errors.ConfigError, match="unknown DataConfig"):
        configs.data_config_from_params({"nonsense": 1})


def test_override_values_may_hold_commas():
    values = flags.FlagValues()
    names = flag_utils.define_config_flags(
        configs.FSR_TRAIN_PRESETS["paper"], flag_values=values
    )
    flag_utils.define_override_flags(flag_values=values)
    values(
        [
            "prog",
            "--params_override=scales=2,3,4, batch_size=8,"
            "lr_boundaries=20000,50000,reweight=false",
        ]
    )
    out = flag_utils.resolve_config(
        configs.FSR_TRAIN_PRESETS["paper"], names, values
    )
    assert out.scales == (2, 3, 4) and out.batch_size == 8
    assert out.reweight is False and out.lr_boundaries == (20000, 50000)
    fer = flags.FlagValues()
    fer_names = flag_utils.define_config_flags(
        configs.FER_TRAIN_PRESETS["paper"], flag_values=fer
    )
    flag_utils.define_override_flags(flag_values=fer)
    fer(["prog", "--params_override=learning_rate_schedule=0:0.1,120:0.01"])
    out = flag_utils.resolve_config(
        configs.FER_TRAIN_PRESETS["paper"], fer_names, fer
    )
    # "0:0.1" stays text (YAML 1.1 would read it as the base-60 number 0.1).
    assert out.learning_rate_schedule == ((0, 0.1), (120, 0.01))


@pytest.mark.parametrize(
    "given",
    ["2,4,8", " 2, 4 ,8,", [2, 4, 8], (2, 4, 8)],
)
def test_list_settings_are_typed_tuples_however_given(given):
    # Flag text, YAML/JSON lists and tuples all become the same tuple.
    assert configs.FSRTrainConfig(scales=given).scales == (2, 4, 8)


def test_list_settings_from_every_source_are_tuples(fv, tmp_path):
    values, names = fv
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_scales: [1, 2]\nlearning_rate_schedule: [[0, 0.5]]\n")
    values(
        [
            "prog",
            f"--config_file={cfg}",
            "--params_override=val_scales=1,4",
        ]
    )
    out = flag_utils.resolve_config(configs.FERTrainConfig(), names, values)
    assert out.train_scales == (1, 2) and out.val_scales == (1, 4)
    assert out.learning_rate_schedule == ((0, 0.5),)
    values2 = flags.FlagValues()
    names2 = flag_utils.define_config_flags(
        configs.FERTrainConfig(), flag_values=values2
    )
    values2(["prog", "--learning_rate_schedule=0:0.2,3:0.02", "--val_scales=8"])
    out = flag_utils.resolve_config(
        configs.FERTrainConfig(), names2, values2, use_overrides=False
    )
    assert out.learning_rate_schedule == ((0, 0.2), (3, 0.02))
    assert out.val_scales == (8,)
    # dataclasses.replace parses too, and a params.yaml round trip (lists)
    # gives back an equal config.
    again = configs.replace(out, **{"val_scales": [8]})
    assert again == out
    assert configs.list_text(out.learning_rate_schedule) == "0:0.2,3:0.02"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("scales", "2,x", "--scales must be comma-separated integers"),
        ("scales", [2.5], "--scales must be comma-separated integers"),
        ("lr_boundaries", True, "--lr_boundaries must be comma-separated"),
        ("snapshot_steps", {"a": 1}, "--snapshot_steps must be comma"),
    ],
)
def test_bad_list_settings_fail_on_creation_naming_the_flag(
    field, value, message
):
    with pytest.raises(errors.ConfigError, match=message):
        configs.FSRTrainConfig(**{field: value})


@pytest.mark.parametrize(
    "value, message",
    [
        ("0:0.1,x", "must look like '0:0.1,120:0.01'"),
        ("1:0.1", "must start at 0 and increase"),
        ("0:0.1,5:0.01,5:0.001", "must start at 0 and increase"),
        ([[0, -1.0]], "values must be > 0"),
        ([[0.5, 0.1]], "must look like"),
    ],
)
def test_bad_schedules_name_the_flag(value, message):
    with pytest.raises(errors.ConfigError, match=message) as e:
        configs.FERTrainConfig(learning_rate_schedule=value)
    assert "--learning_rate_schedule" in str(e.value)
