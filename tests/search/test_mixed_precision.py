"""A ``bit_budget`` search on Ray: the sensitivity profile is measured once and stored on
the study, a resume allocates by the stored profile, the front shows the allocation and
its recipe re-applies exactly those precisions."""

from __future__ import annotations

import itertools
import json
import logging
import math

import optuna
import pytest
import torch
from torch import nn

from objectives import LayerProfile, allocate, pruned_copy
from objectives._config import CompressionConfig
from search import Recipe, Search, SearchArgumentError, load_front
from search._preflight import FAST_CORNER_SHARE, fast_corner_warning
from search.study import ATTR_BASELINE
from spaces import SearchSpace


def _space() -> SearchSpace:
    return (
        SearchSpace.default()
        .per_layer_precision(6.0, 12.0)
        .fix("prune_ratio", 0.0)
        .fix("learning_rate", 1e-4)
        .fix("batch_size", 64)
        .fix("grad_accum_steps", 1)
    )


@pytest.mark.parametrize(("name", "bounds"), [("latency_budget", (0.5, 1.5)),
                                              ("latency_saving", (0.0, 1.0))])
def test_latency_bound_is_searched_and_each_trial_records_its_time_share(
    ray_session, digits_task, tmp_path, name, bounds, caplog
):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    key = "latency" if name == "latency_budget" else "saving"
    space = _space().per_layer_precision(6.0, 12.0, **{key: bounds})
    with caplog.at_level(logging.WARNING, logger="search"):
        Search(digits_task, space, storage=url, study_name="timed", n_trials=2,
               max_accuracy_drop=0.05, seed=1, progress=False, seed_configs=False,
               retime_rounds=0).run()
    study = optuna.load_study(study_name="timed", storage=url)
    profile = LayerProfile.from_dict(study.user_attrs[ATTR_BASELINE]["layer_profile"])
    # The search said whether this machine's fastest allocation lies beyond the range,
    # as its stored profile says (which it does depends on the CPU).
    hint = fast_corner_warning(digits_task.teacher, space, profile)
    said = [r.getMessage() for r in caplog.records if "fastest allocation" in r.getMessage()]
    assert said == ([] if hint is None else [hint])
    assert len(study.trials) == 2
    for t in study.trials:
        assert bounds[0] <= t.params[name] <= bounds[1]
        config = CompressionConfig(bit_budget=t.params["bit_budget"], **{name: t.params[name]})
        # The trial allocated by the stored profile under both budgets.
        again = allocate(pruned_copy(digits_task, config), profile, config.bit_budget,
                         config.latency_budget, config.latency_saving)
        assert json.loads(t.user_attrs["layer_bits"]) == again.layer_bits
        assert t.user_attrs["layer_time_share"] == pytest.approx(again.time_share)


def test_budget_search_stores_the_profile_resumes_with_it_and_exports(
    ray_session, digits_task, tmp_path
):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    name = "mixed"
    Search(digits_task, _space(), storage=url, study_name=name, n_trials=2,
           max_accuracy_drop=0.05, seed=1, progress=False, seed_configs=False).run()
    study = optuna.load_study(study_name=name, storage=url)
    baseline = dict(study.user_attrs[ATTR_BASELINE])
    profile = LayerProfile.from_dict(baseline["layer_profile"])
    assert sorted(profile.sensitivity) == ["net.0", "net.2", "net.4"]
    # The hardware feedback: each layer timed at each precision on the baseline's machine.
    assert sorted(profile.latency_ms) == sorted(profile.sensitivity)
    assert profile.hardware == baseline["hardware"]
    for t in study.trials:
        bits = json.loads(t.user_attrs["layer_bits"])
        assert set(bits) == set(profile.sensitivity)
        assert t.user_attrs["effective_bits"] <= t.params["bit_budget"]

    # Tamper with the stored profile: the big middle layer becomes free to quantize. A
    # resumed study that allocated by a re-measured profile would keep it above int4.
    budget = 9.0
    teacher = CompressionConfig(bit_budget=budget)
    honest = allocate(pruned_copy(digits_task, teacher), profile, budget).layer_bits
    assert honest["net.2"] != 4
    tampered = profile.to_dict()
    tampered["sensitivity"]["net.2"] = {"32": 0.0, "8": 0.0, "4": 0.0}
    baseline["layer_profile"] = tampered
    study.set_user_attr(ATTR_BASELINE, baseline)
    study.enqueue_trial({"bit_budget": budget, "distill_temperature": 4.0,
                         "distill_alpha": 0.5})
    Search(digits_task, storage=url, study_name=name, n_trials=3, progress=False).run()
    resumed = optuna.load_study(study_name=name, storage=url).trials[-1]
    assert resumed.params["bit_budget"] == budget
    assert json.loads(resumed.user_attrs["layer_bits"])["net.2"] == 4

    front, info = load_front(url, name)
    assert len(front) >= 1
    chosen = front.best()
    assert chosen.layer_bits is not None
    recipe = Recipe.from_front(front, info, trial=chosen.trial)
    assert recipe.compression.layer_bits == chosen.layer_bits
    loaded = Recipe.load(recipe.save(tmp_path / "recipe.yaml"))
    applied = loaded.apply(digits_task)
    assert applied.result.layer_bits == chosen.layer_bits
    assert applied.result.size_bytes == chosen.size_bytes
    assert applied.result.accuracy == pytest.approx(chosen.accuracy, abs=1e-6)


def test_budget_below_int4_is_refused_before_the_study_is_written(digits_task, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = SearchSpace.default().per_layer_precision(4.0, 8.0)
    with pytest.raises(SearchArgumentError, match="search bit_budget from 5.25"):
        Search(digits_task, space, storage=url, study_name="low", n_trials=1,
               progress=False).run()
    assert optuna.get_all_study_names(url) == []


def test_a_search_over_both_bases_stores_a_profile_for_each_and_trials_use_their_own(
    ray_session, digits_task, tmp_path
):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    name = "bases"
    space = _space().per_layer_precision(6.0, 12.0, bases=(32, 16))
    Search(digits_task, space, storage=url, study_name=name, n_trials=1,
           max_accuracy_drop=0.05, seed=1, progress=False, seed_configs=False).run()
    study = optuna.load_study(study_name=name, storage=url)
    baseline = dict(study.user_attrs[ATTR_BASELINE])
    fp32, bf16 = (LayerProfile.from_dict(baseline[k])
                  for k in ("layer_profile", "layer_profile_16"))
    assert (fp32.base, bf16.base) == (32, 16)
    assert all(s[16] == 0.0 for s in bf16.sensitivity.values())
    # Tamper with the bf16 base's stored profile only: the big middle layer becomes free
    # to quantize there. A bf16-base trial that allocated by the fp32 profile (or a
    # re-measured one) would keep it above int4.
    budget = 9.0
    teacher = CompressionConfig(bit_budget=budget, quant_bits=16)
    assert allocate(pruned_copy(digits_task, teacher), bf16, budget).layer_bits["net.2"] != 4
    tampered = bf16.to_dict()
    tampered["sensitivity"]["net.2"] = {"16": 0.0, "8": 0.0, "4": 0.0}
    baseline["layer_profile_16"] = tampered
    study.set_user_attr(ATTR_BASELINE, baseline)
    for bits in (16, 32):
        study.enqueue_trial({"quant_bits": bits, "bit_budget": budget,
                             "distill_temperature": 4.0, "distill_alpha": 0.5})
    Search(digits_task, storage=url, study_name=name, n_trials=3, progress=False).run()
    on16, on32 = optuna.load_study(study_name=name, storage=url).trials[-2:]
    assert on16.params["quant_bits"] == 16 and on32.params["quant_bits"] == 32
    assert json.loads(on16.user_attrs["layer_bits"])["net.2"] == 4
    fp32_alloc = allocate(pruned_copy(digits_task, CompressionConfig(bit_budget=budget)),
                          fp32, budget)
    assert json.loads(on32.user_attrs["layer_bits"]) == fp32_alloc.layer_bits

    # The bf16-base trial's recipe (on the front or not) re-applies its base and
    # precisions exactly.
    front, info = load_front(url, name)
    candidate = next(c for c in front.trials if c.trial == on16.number)
    recipe = Recipe.from_candidate(candidate, info)
    assert recipe.compression.quant_bits == 16
    applied = Recipe.load(recipe.save(tmp_path / "recipe.yaml")).apply(digits_task)
    assert applied.result.layer_bits == json.loads(on16.user_attrs["layer_bits"])
    assert applied.result.size_bytes == candidate.size_bytes


def test_uniform_int8_beside_the_allocation_runs_uniform_and_its_recipe_reapplies_it(
    ray_session, digits_task, tmp_path
):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = _space().per_layer_precision(6.0, 12.0, uniform=(8, 4))
    assert space.parameters["quant_bits"].choices == (32, 8, 4)
    Search(digits_task, space, storage=url, study_name="corners", n_trials=1,
           max_accuracy_drop=0.05, seed=1, progress=False, seed_configs=False,
           retime_rounds=0).run()
    study = optuna.load_study(study_name="corners", storage=url)
    fit = {"distill_temperature": 4.0, "distill_alpha": 0.5}
    study.enqueue_trial({"quant_bits": 32, "bit_budget": 9.0, **fit})
    study.enqueue_trial({"quant_bits": 8, **fit})
    Search(digits_task, storage=url, study_name="corners", n_trials=3, progress=False,
           retime_rounds=0).run()
    allocated, uniform = optuna.load_study(study_name="corners", storage=url).trials[1:]
    assert allocated.params["bit_budget"] == 9.0 and "layer_bits" in allocated.user_attrs
    assert uniform.params["quant_bits"] == 8 and "bit_budget" not in uniform.params
    assert "layer_bits" not in uniform.user_attrs

    front, info = load_front(url, "corners")
    candidate = next(c for c in front.trials if c.trial == uniform.number)
    assert candidate.layer_bits is None and candidate.params["quant_bits"] == 8
    recipe = Recipe.from_candidate(candidate, info)
    assert recipe.compression.bit_budget == 0 and recipe.compression.quant_bits == 8
    applied = Recipe.load(recipe.save(tmp_path / "recipe.yaml")).apply(digits_task)
    assert applied.result.layer_bits is None
    assert applied.result.size_bytes == candidate.size_bytes
    assert applied.result.accuracy == pytest.approx(candidate.accuracy, abs=1e-6)


def _mlp(widths: tuple[int, ...] = (64, 96, 96, 10)) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def _profile(model: nn.Sequential, table: dict[int, float]) -> LayerProfile:
    """A measured-looking profile of ``model``: sensitivity grows as bits fall, every
    layer's time at each precision is ``table``'s."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return LayerProfile(
        weights={n: model.get_submodule(n).weight.numel() for n in names},
        sensitivity={n: {32: 0.0, 16: 0.001, 8: 0.01, 4: 0.1} for n in names},
        rows=64, latency_ms={n: dict(table) for n in names},
    )


def test_a_range_that_barely_reaches_the_fastest_allocation_is_named_with_a_fix():
    model = _mlp()
    saving = SearchSpace.default().per_layer_precision(5.5, 32.0, saving=(0.0, 1.0))
    # fp32 fastest on every layer (an AVX2-only CPU): the fastest allocation is every
    # layer fp32, which a range ending at 32 reaches only at its top.
    fp32_first = _profile(model, {32: 1.0, 16: 10.0, 8: 1.05, 4: 1.4})
    line = fast_corner_warning(model, saving, fp32_first)
    assert line is not None
    assert "(every layer fp32, by the per-layer timing table) takes 32.0 effective bits" in line
    assert "0 % of bit_budget's range [5.5, 32] reaches it" in line
    high = float(line.split("per_layer_precision(high=")[1].split(")")[0])
    # The suggested high gives budgets from 32 up a sixth of the log range, and silences it.
    assert math.log(high / 32) / math.log(high / 5.5) == pytest.approx(1 / 6, abs=1e-3)
    assert fast_corner_warning(
        model, SearchSpace.default().per_layer_precision(5.5, high, saving=(0.0, 1.0)),
        fp32_first) is None
    # The benchmark's "fp32 reachable" range (45.25) is above the line too.
    assert math.log(45.25 / 32) / math.log(45.25 / 5.5) >= FAST_CORNER_SHARE
    # A latency_budget aims for speed too; stored as a dict, the profile reads the same.
    timed = SearchSpace.default().per_layer_precision(5.5, 32.0, latency=(0.5, 1.0))
    assert fast_corner_warning(model, timed, fp32_first.to_dict()) == line
    # Where int8 is faster, the fastest allocation is int8, well inside the range.
    int8_first = _profile(model, {32: 1.0, 16: 0.8, 8: 0.5, 4: 0.9})
    assert fast_corner_warning(model, saving, int8_first) is None
    # No time parameter (the allocation does not aim for speed), a bf16-only base, a
    # fixed budget, or a profile without a timing table: nothing to say.
    assert fast_corner_warning(
        model, SearchSpace.default().per_layer_precision(5.5, 32.0), fp32_first) is None
    assert fast_corner_warning(
        model, SearchSpace.default().per_layer_precision(5.5, 32.0, saving=(0.0, 1.0),
                                                         bases=(16,)), fp32_first) is None
    assert fast_corner_warning(model, saving.fix("bit_budget", 8.0), fp32_first) is None
    bare = LayerProfile(weights=fp32_first.weights, sensitivity=fp32_first.sensitivity,
                        rows=64)
    assert fast_corner_warning(model, saving, bare) is None
    # Mixed: the last layer is faster in int8, so the fastest allocation stores it int8
    # and needs fewer bits; the line counts the layers at each precision.
    mixed = _profile(model, {32: 1.0, 16: 10.0, 8: 1.05, 4: 1.4})
    mixed.latency_ms["4"][8] = 0.2
    line = fast_corner_warning(model, saving, mixed)
    assert line is not None and "(2 fp32, 1 int8, by the per-layer timing table)" in line

