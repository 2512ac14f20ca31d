from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search import Search
from search._seeds import seed_configs
from search.study import TRIAL_SEED_CONFIG as SEED_ATTR
from spaces import SearchSpace


def test_seed_configs_are_the_documented_ones_in_the_default_space():
    seeds = seed_configs(SearchSpace.default())
    assert [(s["prune_ratio"], s["quant_bits"]) for s in seeds] == [
        (0.0, 32), (0.0, 8), (0.0, 16), (0.25, 8), (0.5, 8)
    ]
    for s in seeds:
        assert SearchSpace.default().contains(s)
        assert s["batch_size"] == 64 and s["learning_rate"] == 1e-3


def test_seed_configs_respect_the_space():
    space = SearchSpace.default().narrow("prune_ratio", high=0.2).narrow(
        "quant_bits", choices=[32, 8]
    )
    seeds = seed_configs(space)
    assert [(s["prune_ratio"], s["quant_bits"]) for s in seeds] == [(0.0, 32), (0.0, 8)]
    fixed = SearchSpace.default().fix("quant_bits", 8).narrow("learning_rate", low=5e-3)
    seeds = seed_configs(fixed)
    assert all("quant_bits" not in s for s in seeds)
    assert [s["prune_ratio"] for s in seeds] == [0.0, 0.25, 0.5]
    assert all(5e-3 <= s["learning_rate"] <= 1e-2 for s in seeds)


def test_uniform_seeds_become_budgets_in_a_per_layer_space():
    space = SearchSpace.preset("decoder").per_layer_precision(5.5, 16.0)
    seeds = seed_configs(space)
    # Each structure of the uniform seeds is seeded, int8 as a budget of int8's size.
    structures = [(s.get("depth_prune_ratio"), s.get("ffn_prune_ratio"), s.get("embed_bits"),
                   s["bit_budget"]) for s in seeds]
    assert (0.5, 0.0, 8, 8.5) in structures and (0.33, 0.5, 8, 8.5) in structures
    assert (0.33, 0.0, 32, 8.5) in structures and (0.0, 0.0, 32, 6.0) in structures
    assert all(space.contains({**s, "quant_bits": 32}) and "quant_bits" not in s for s in seeds)
    # Not where the budget range cannot hold it, nor where quant_bits is searched.
    narrow = SearchSpace.default().per_layer_precision(10.0, 16.0)
    assert all(s["bit_budget"] != 8.5 for s in seed_configs(narrow))
    assert all("bit_budget" not in s for s in seed_configs(SearchSpace.default()))


def test_uniform_int8_seeds_become_the_fastest_allocation_of_their_size_with_a_saving():
    space = SearchSpace.preset("decoder").per_layer_precision(5.5, 32.0, saving=(0.0, 1.0))
    seeds = seed_configs(space)
    assert all(space.contains({**s, "quant_bits": 32}) for s in seeds)
    uniform = [s for s in seed_configs(SearchSpace.preset("decoder")) if s["quant_bits"] == 8]
    def structure(s):
        return (s.get("prune_ratio"), s.get("depth_prune_ratio"), s.get("ffn_prune_ratio"),
                s.get("embed_bits"))
    # Every uniform int8 structure is seeded at int8's size and the fastest allocation
    # there (uniform int8 where int8 is each layer's fastest precision) ...
    fastest = [s for s in seeds if s["latency_saving"] == 1.0]
    assert [structure(s) for s in fastest] == [structure(s) for s in uniform]
    assert {s["bit_budget"] for s in fastest} == {8.5}
    # ... while the budget seeds keep the least sensitive allocation (8.5 and 6.0 bits
    # unpruned), as do the teacher (32 bits) and bf16 (16 bits).
    least = [(structure(s), s["bit_budget"]) for s in seeds if s["latency_saving"] == 0.0]
    unpruned = (None, 0.0, 0.0, 32)
    assert least == [(unpruned, 32.0), (unpruned, 16.0), (unpruned, 8.5), (unpruned, 6.0)]
    assert seeds[0]["bit_budget"] == 32.0 and seeds[0]["latency_saving"] == 0.0
    # Without latency_saving in the space, nothing changes.
    plain = seed_configs(SearchSpace.preset("decoder").per_layer_precision(5.5, 32.0))
    assert all("latency_saving" not in s for s in plain)
    # A saving range that stops below 1 cannot hold the fastest allocation: no saving.
    capped = seed_configs(SearchSpace.preset("decoder").per_layer_precision(
        5.5, 32.0, saving=(0.0, 0.5)))
    assert {s["latency_saving"] for s in capped} == {0.0}


def test_int8_seeds_take_the_budget_uniform_int8_takes_where_a_tied_head_adds_bytes(
        tiny_llama_dir, digits_task, tmp_path):
    """A tied ``lm_head`` stored apart adds its bytes, so uniform int8 takes more than 8.5
    bits on a decoder with tied embeddings: its seeds are seeded at that budget (a quarter
    bit up), where every layer at int8 fits and stores what uniform int8 stores."""
    import math

    from safetensors.torch import load_file

    from objectives import CompressionConfig, pruned_copy, save_weights, uniform_budget
    from objectives.operators._allocation import allocated
    from objectives.operators._quantize import quantize
    from tests.objectives.tiny_decoder import tiny_decoder_task

    task = tiny_decoder_task(tiny_llama_dir)
    budgets = {b: uniform_budget(task.teacher, b) for b in (8, 4)}
    assert budgets[8] > 8.5 and budgets[4] > 4.5
    space = SearchSpace.preset("decoder").per_layer_precision(5.5, 32.0, saving=(0.0, 1.0))
    seeds = seed_configs(space, uniform_budgets=budgets)
    fastest = [s for s in seeds if s["latency_saving"] == 1.0]
    assert {s["bit_budget"] for s in fastest} == {math.ceil(4 * budgets[8]) / 4}
    # The budget seeds of SEEDS are budgets, not uniform precisions: they stay.
    least = [s["bit_budget"] for s in seeds if s["latency_saving"] == 0.0]
    assert least == [32.0, 16.0, 8.5, 6.0]
    # Every layer at int8, the head stored apart, is uniform int8, byte for byte.
    student = pruned_copy(task, CompressionConfig())
    def stored(model, name):
        save_weights(model, tmp_path / name)
        return sum(t.numel() * t.element_size()
                   for t in load_file(str(tmp_path / name)).values())
    every = quantize(pruned_copy(task, CompressionConfig()), 32,
                     layer_bits={n: 8 for n in allocated(student)})
    assert stored(every, "a.safetensors") == stored(quantize(student, 8), "b.safetensors")
    # Where uniform int8 takes less than 8.5 bits (no tied layer), the seeds keep 8.5.
    assert uniform_budget(digits_task.teacher, 8) < 8.5
    plain = seed_configs(space, uniform_budgets={8: uniform_budget(digits_task.teacher, 8)})
    assert plain == seed_configs(space)


def test_a_search_seeds_int8_at_the_budget_uniform_int8_takes_on_its_teacher(
        tiny_llama_dir, tmp_path):
    """The search enqueues its seeds with its teacher's uniform budgets (a baseline
    without a hardware probe, so no precision is skipped as slow on this machine)."""
    import math

    import optuna
    from optuna.trial import TrialState

    from objectives import uniform_budget
    from search import Search
    from tests.objectives.tiny_decoder import tiny_decoder_task

    task = tiny_decoder_task(tiny_llama_dir)
    space = SearchSpace.preset("decoder").per_layer_precision(5.5, 32.0, saving=(0.0, 1.0))
    search = Search(task, space, storage=f"sqlite:///{tmp_path / 'study.db'}",
                    study_name="s", n_trials=1, progress=False)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    search._enqueue_first(study, space, {})
    # Each enqueued trial, asked for, takes its seed's values.
    queued = [study.ask(space.distributions()).params
              for _ in study.get_trials(states=(TrialState.WAITING,))]
    assert queued
    budgets = {p["bit_budget"] for p in queued if p.get("latency_saving") == 1.0}
    assert budgets == {math.ceil(4 * uniform_budget(task.teacher, 8)) / 4}


def test_per_layer_seeds_follow_the_hardware_probe_as_uniform_ones_do():
    from search._seeds import space_precisions

    space = SearchSpace.preset("decoder").per_layer_precision(5.5, 32.0)
    # The allocation chooses among bf16, int8 and int4 too: the probe times them.
    assert space_precisions(space) == (32, 16, 8, 4)
    seeds = seed_configs(space)
    assert seeds[0]["bit_budget"] == 32.0  # the teacher: every layer fp32
    # Where int8 ran slower than fp32, the seeds that prune are seeded at fp32 (32 bits),
    # exactly the structures a uniform space then seeds at quant_bits 32.
    slow = seed_configs(space, skip_bits=(8, 4))
    uniform = seed_configs(SearchSpace.preset("decoder"), skip_bits=(8, 4))
    def structure(s):
        return (s.get("depth_prune_ratio"), s.get("ffn_prune_ratio"), s.get("embed_bits"))
    at_fp32 = [structure(s) for s in slow if s["bit_budget"] == 32.0]
    assert at_fp32 == [structure(s) for s in uniform if s["quant_bits"] == 32]
    assert all(space.contains({**s, "quant_bits": 32}) for s in slow)


def test_new_study_evaluates_seeds_first(searched):
    url, name, _ = searched
    study = optuna.load_study(study_name=name, storage=url)
    want = [(0.0, 32), (0.0, 8), (0.0, 16), (0.25, 8), (0.5, 8)]
    from search._seeds import slower_precisions

    # bf16 measured slower than fp32 beyond the noise margin on this hardware: not seeded
    if 16 in slower_precisions(study.user_attrs["slimsearch_baseline"]):
        want.remove((0.0, 16))
    first = sorted(study.trials, key=lambda t: t.number)[: len(want)]
    assert all(t.user_attrs.get(SEED_ATTR) == "seed" for t in first)
    assert [(t.params["prune_ratio"], t.params["quant_bits"]) for t in first] == want


def test_warm_start_re_evaluates_an_earlier_front(searched, digits_task):
    url, name, front = searched
    Search(digits_task, storage=url, study_name="warm", n_trials=len(front), seed_configs=False,
           warm_start=[name], progress=False).run()
    warm = optuna.load_study(study_name="warm", storage=url)
    got = [t.params for t in warm.trials if t.user_attrs.get(SEED_ATTR) == "warm_start"]
    want = [t.params for t in optuna.load_study(study_name=name, storage=url).best_trials]
    assert sorted(map(repr, got)) == sorted(map(repr, want))


def test_early_stopped_trials_are_pruned_and_count(tmp_path, ray_session):
    from objectives.tasks import digits

    task = digits(finetune_epochs=6, latency_batch_size=64)
    space = (
        SearchSpace.default()
        .narrow("prune_ratio", low=0.9, high=0.95)
        .fix("learning_rate", 1e-4)
        .fix("batch_size", 128)
    )
    url = f"sqlite:///{tmp_path / 'es.db'}"
    Search(task, space, storage=url, study_name="es", n_trials=3, max_accuracy_drop=0.0,
           seed_configs=False, progress=False, early_stopping=True).run()
    study = optuna.load_study(study_name="es", storage=url)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "95% pruning at lr 1e-4 cannot stay within 0 points of the teacher"
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3
    for t in pruned:
        assert "accuracy floor" in t.user_attrs["stopped"]
        assert t.user_attrs["epoch_accuracies"]
        assert t.user_attrs["compute_s"] > 0


def test_transformer_preset_gets_transformer_seeds():
    seeds = seed_configs(SearchSpace.preset("transformer"))
    assert {"prune_vocab": True, "embed_bits": 8, "quant_bits": 8}.items() <= seeds[3].items()
    assert seeds[4]["attn_prune_ratio"] == 0.25 and seeds[4]["ffn_prune_ratio"] == 0.5
    assert all(SearchSpace.preset("transformer").contains(s) for s in seeds)


def test_precisions_slower_than_fp32_on_this_hardware_are_not_seeded():
    from search._seeds import slower_precisions, space_precisions

    baseline = {"precision_latency_ms": {"32": 2.0, "16": 19.0, "8": 0.9}}
    assert slower_precisions(baseline) == {16: 9.5}
    assert slower_precisions({}) == {}
    # Within SLOWER_MARGIN (1.15) of fp32 is a tie this machine's noise can produce:
    # seeded; beyond it, not.
    assert slower_precisions({"precision_latency_ms": {"32": 2.0, "8": 2.2}}) == {}
    assert slower_precisions({"precision_latency_ms": {"32": 2.0, "8": 2.4}}) == {8: 1.2}
    space = SearchSpace.default()
    assert space_precisions(space) == (32, 16, 8)
    assert space_precisions(space.fix("quant_bits", 8)) == (32, 8)
    seeds = seed_configs(space, skip_bits=(16,))
    assert seeds and all(s["quant_bits"] != 16 for s in seeds)
    assert any(s["quant_bits"] == 16 for s in seed_configs(space))


def test_decoder_preset_seeds_depth_and_keeps_it_at_fp32_where_int8_is_slower():
    space = SearchSpace.preset("decoder")
    seeds = seed_configs(space)
    depth = [s for s in seeds if s.get("depth_prune_ratio", 0) > 0]
    assert [s["quant_bits"] for s in depth] == [8, 8, 8]
    assert [s["depth_prune_ratio"] for s in depth] == [0.33, 0.33, 0.5]
    assert depth[1]["ffn_prune_ratio"] == 0.5 and depth[1]["embed_bits"] == 8
    slow = seed_configs(space, skip_bits=(8,))
    assert all(s["quant_bits"] != 8 for s in slow)
    assert [s["quant_bits"] for s in slow if s.get("depth_prune_ratio", 0) > 0] == [32, 32, 32]
    assert all(space.contains(s) for s in seeds + slow)


def test_early_stopping_compares_a_probe_with_finished_trials_raw_medians(searched):
    # A running trial's pre-fine-tune probe is a raw median; finished trials are read the
    # same way (their objective is relative to the teacher timed beside them).
    from search.run import EarlyStoppingSpec
    from search.run._worker import finished_trials

    url, name, _ = searched
    finished = finished_trials(EarlyStoppingSpec(0.9, 0.05, url, name))
    study = optuna.load_study(study_name=name, storage=url)
    raw = {t.user_attrs["latency_raw_ms"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert finished and all(f.latency_ms in raw for f in finished)


def test_uniform_int8_seeds_stay_uniform_beside_the_allocation():
    space = SearchSpace.preset("decoder").per_layer_precision(
        5.5, 32.0, bases=(32, 16), uniform=(8, 4), saving=(0.0, 1.0))
    seeds = seed_configs(space)
    assert all(space.contains(s | space.fixed_values()) for s in seeds)
    int8 = [s for s in seeds if s["quant_bits"] == 8]
    # Every uniform int8 structure is seeded as uniform int8, without a budget ...
    uniform = [s for s in seed_configs(SearchSpace.preset("decoder")) if s["quant_bits"] == 8]
    def structure(s):
        return (s.get("depth_prune_ratio"), s.get("ffn_prune_ratio"), s.get("embed_bits"))
    assert [structure(s) for s in int8] == [structure(s) for s in uniform]
    assert all("bit_budget" not in s and "latency_saving" not in s for s in int8)
    # ... beside the teacher (32 bits on fp32), bf16 (16 bits on bf16) and the budgets.
    assert {"quant_bits": 32, "bit_budget": 32.0}.items() <= seeds[0].items()
    assert {"quant_bits": 16, "bit_budget": 16.0}.items() <= seeds[2].items()
    assert [s["bit_budget"] for s in seeds if s.get("bit_budget") in (8.5, 6.0)] == [8.5, 6.0]
