from __future__ import annotations

import optuna
import pytest

from objectives import CompressionConfig
from spaces import CATALOG, Choice, Fixed, FloatRange, SearchSpace, SpaceError


def test_default_space_has_the_documented_parameters():
    space = SearchSpace.default()
    assert list(space) == [
        "prune_ratio",
        "quant_bits",
        "distill_temperature",
        "distill_alpha",
        "batch_size",
        "grad_accum_steps",
        "learning_rate",
    ]
    p = space.parameters
    assert p["prune_ratio"] == FloatRange(low=0.0, high=0.8)
    assert p["quant_bits"] == Choice(choices=(32, 16, 8))
    assert p["distill_temperature"] == FloatRange(low=1.0, high=20.0, log=True)
    assert p["distill_alpha"] == FloatRange(low=0.0, high=1.0)
    assert p["batch_size"] == Choice(choices=(16, 32, 64, 128))
    assert p["grad_accum_steps"] == Choice(choices=(1, 2, 4, 8))
    assert p["learning_rate"] == FloatRange(low=1e-4, high=1e-2, log=True)


def test_every_catalog_name_is_a_trial_config_field():
    assert set(CATALOG) <= set(CompressionConfig.model_fields)


def test_yaml_round_trip(tmp_path):
    space = (
        SearchSpace.default()
        .narrow("prune_ratio", low=0.1, high=0.5)
        .narrow("quant_bits", choices=[8, 16])
        .fix("learning_rate", 0.003)
        .drop("grad_accum_steps")
    )
    assert SearchSpace.from_yaml(space.to_yaml()) == space
    assert SearchSpace.load(space.save(tmp_path / "space.yaml")) == space
    assert space.fixed_values() == {"learning_rate": 0.003}
    assert "grad_accum_steps" not in space
    assert "learning_rate" not in space.searched()


def test_bare_scalars_are_fixed_values():
    space = SearchSpace.from_yaml("quant_bits: 8\nprune_ratio: {low: 0.0, high: 0.5}\n")
    assert space.parameters["quant_bits"] == Fixed(value=8)
    assert set(space.distributions()) == {"prune_ratio"}


def test_distributions_are_optuna_distributions():
    dists = SearchSpace.default().distributions()
    assert isinstance(dists["prune_ratio"], optuna.distributions.FloatDistribution)
    assert dists["learning_rate"].log
    assert isinstance(dists["quant_bits"], optuna.distributions.CategoricalDistribution)


def test_contains():
    space = SearchSpace.default().fix("quant_bits", 8)
    point = {
        "prune_ratio": 0.3,
        "quant_bits": 8,
        "distill_temperature": 2.0,
        "distill_alpha": 0.5,
        "batch_size": 32,
        "grad_accum_steps": 2,
        "learning_rate": 1e-3,
    }
    assert space.contains(point)
    assert not space.contains({**point, "quant_bits": 16})
    assert not space.contains({**point, "prune_ratio": 0.9})


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("prune_ratio: {low: 0.5, high: 0.5}", "empty range"),
        ("prune_ratio: {low: 0.6, high: 0.2}", "empty range"),
        ("prune_ratio: {low: 0.0, high: 0.99}", "prune_ratio.high"),
        ("prune_ratio: {low: -0.1, high: 0.5}", "prune_ratio.low"),
        ("quant_bits: {choices: [2, 8]}", "allowed: one of 32, 16, 8, 4"),
        ("edge_bits: {choices: [16]}", "allowed: one of 0, 8, 32"),
        ("quant_bits: {choices: []}", "non-empty list"),
        ("quant_bits: {choices: [8, 8]}", "duplicate"),
        ("quant_bits: 12", "not supported"),
        ("distill_temperature: 0", "> 0"),
        ("distill_temperature: {low: 0.0, high: 5.0}", "distill_temperature.low"),
        ("distill_alpha: 1.5", "distill_alpha"),
        ("learning_rate: {low: 0.0, high: 0.1, log: true}", "learning_rate.low"),
        ("batch_size: {low: 8, high: 64}", "takes choices"),
        ("batch_size: {choices: [0, 16]}", "batch_size.choices"),
        ("batch_size: {choices: [16.5]}", "not an integer"),
        ("grad_accum_steps: {choices: [one]}", "not a number"),
        ("prune_ratoi: {low: 0.0, high: 0.5}", "unknown parameter 'prune_ratoi'"),
        ("prune_ratio: {low: 0.0, hi: 0.5}", "unrecognised entry"),
        ("prune_ratio: {low: 0.0, high: 0.5, log: maybe}", "true/false"),
        ("[1, 2, 3]", "mapping"),
        ("{}", "empty search space"),
        ("{bit_budget: {low: 0, high: 16}, quant_bits: 32}", "bit_budget.low: 0 is not a budget"),
        ("{bit_budget: {low: 0.0, high: 8.0}}", "fix bit_budget at 0 and search quant_bits"),
        ("{latency_saving: {low: 0.0, high: 1.0}}", "latency_saving shapes a per-layer"),
        ("{bit_budget: {low: 6, high: 16}, latency_saving: {low: 0, high: 1}, "
         "latency_budget: {low: 0.5, high: 1}}", "search one of them"),
        ("{bit_budget: {low: 6, high: 16}, latency_saving: {low: 0, high: 1.5}}",
         "latency_saving.high"),
        ("prune_ratio: {low: 0.0, high: [", "not valid YAML"),
    ],
)
def test_invalid_spaces_are_rejected_with_the_field_named(yaml_text, needle):
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_yaml(yaml_text)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_space_errors_are_value_errors():
    with pytest.raises(ValueError):
        SearchSpace({"quant_bits": 3})


def test_editing_names_must_exist():
    space = SearchSpace.default().drop("batch_size")
    with pytest.raises(SpaceError, match="not in this space"):
        space.narrow("batch_size", choices=[8])
    with pytest.raises(SpaceError, match="unknown parameter"):
        space.fix("nonsense", 1)


def test_load_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="cannot read"):
        SearchSpace.load(tmp_path / "nope.yaml")


def test_a_positive_budget_range_is_a_space():
    space = SearchSpace({"bit_budget": {"low": 0.5, "high": 16.0}, "quant_bits": 32})
    # 0.5 is below any teacher's int4 bits: the pre-flight check refuses it (it probes
    # the low end), naming the minimum; see tests/objectives/test_allocation.py.
    assert space.parameters["bit_budget"].low == 0.5


def test_per_layer_precision_reaches_fp32_on_a_log_scale_and_searches_a_saving():
    space = SearchSpace.preset("decoder").per_layer_precision(saving=(0.0, 1.0))
    budget = space.parameters["bit_budget"]
    assert (budget.low, budget.high, budget.log) == (5.5, 32.0, True)
    saving = space.parameters["latency_saving"]
    assert (saving.low, saving.high) == (0.0, 1.0) and "latency_budget" not in space
    # Switching to a latency budget replaces the saving, never keeps both.
    again = space.per_layer_precision(latency=(0.5, 1.5))
    assert "latency_saving" not in again and again.parameters["latency_budget"].high == 1.5
    with pytest.raises(SpaceError, match="give one"):
        space.per_layer_precision(latency=(0.5, 1.5), saving=(0.0, 1.0))


def test_per_layer_precision_searches_a_bf16_base_beside_fp32():
    from search._seeds import seed_configs

    space = SearchSpace.default().per_layer_precision(bases=(32, 16))
    assert space.parameters["quant_bits"].choices == (32, 16)
    assert SearchSpace.default().per_layer_precision().parameters["quant_bits"].value == 32
    # The bf16 seed is bf16's size on the bf16 base: every layer bf16, uniform bf16.
    seeds = seed_configs(space)
    assert {"quant_bits": 16, "bit_budget": 16.0}.items() <= seeds[2].items()
    assert all(s["quant_bits"] == 32 for i, s in enumerate(seeds) if i != 2)
    with pytest.raises(SpaceError, match=r"bases=\(32, 8\); allowed: 32, 16"):
        SearchSpace.default().per_layer_precision(bases=(32, 8))
    # An allocation needs a base the model runs in: int8 and int4 alone are refused.
    with pytest.raises(SpaceError, match=r"32 or 16 \(got \[8, 4\]\)"):
        SearchSpace({"bit_budget": {"low": 6.0, "high": 16.0},
                     "quant_bits": {"choices": [8, 4]}})


def test_per_layer_precision_offers_uniform_int8_and_int4_beside_the_allocation():
    space = SearchSpace.default().per_layer_precision(bases=(32, 16), uniform=(8, 4),
                                                      saving=(0.0, 1.0))
    assert space.parameters["quant_bits"].choices == (32, 16, 8, 4)
    # The allocation's parameters are drawn on a base only: a uniform trial has none.
    assert space.conditions() == {"bit_budget": ("quant_bits", (32, 16)),
                                  "latency_saving": ("quant_bits", (32, 16))}
    point = {k: v.low if isinstance(v, FloatRange) else v.choices[0]
             for k, v in space.parameters.items() if k not in ("bit_budget", "latency_saving")}
    uniform = {**point, "quant_bits": 8}
    assert space.contains(uniform)
    assert not space.contains({**uniform, "bit_budget": 8.5})
    allocated = {**point, "quant_bits": 16, "bit_budget": 8.5, "latency_saving": 0.5}
    assert space.contains(allocated)
    assert not space.contains({**allocated, "latency_saving": 2.0})
    assert not space.contains({k: v for k, v in allocated.items() if k != "bit_budget"})
    assert SearchSpace.from_yaml(space.to_yaml()) == space
    assert SearchSpace.from_yaml(space.to_yaml()).conditions() == space.conditions()
    # Without uniform precisions nothing is conditional.
    assert SearchSpace.default().per_layer_precision(bases=(32, 16)).conditions() == {}
    with pytest.raises(SpaceError, match=r"uniform=\(16,\); allowed: 8, 4"):
        SearchSpace.default().per_layer_precision(uniform=(16,))
    # A fixed budget cannot sit beside uniform trials, where it could not apply.
    with pytest.raises(SpaceError, match=r"bit_budget: fixed at 8.5, but quant_bits \[8\]"):
        SearchSpace({"bit_budget": 8.5, "quant_bits": {"choices": [32, 8]}})
    with pytest.raises(SpaceError, match="latency_saving: fixed at 1"):
        SearchSpace({"bit_budget": {"low": 6.0, "high": 16.0}, "latency_saving": 1.0,
                     "quant_bits": {"choices": [32, 8]}})
