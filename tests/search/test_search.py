from __future__ import annotations

import logging

import optuna
import pytest
from optuna.trial import TrialState

from search import Search, SearchArgumentError, StorageError, StudyMismatchError
from search.study import ATTR_BASELINE, ATTR_TASK
from spaces import SearchSpace


def _params_key(t: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(t.params.items()))


def test_front_is_optunas_best_trials(searched):
    url, name, front = searched
    study = optuna.load_study(study_name=name, storage=url)
    assert {c.trial for c in front} == {t.number for t in study.best_trials}
    assert len(front) >= 1
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 8 and complete
    for t in complete:
        assert {"compute_s", "prune_s", "finetune_s", "quantize_s", "measure_s"} <= set(
            t.user_attrs
        )
        assert "test_accuracy" in t.user_attrs
        assert t.values[2] == int(t.values[2]) > 0


def test_baseline_and_task_recorded(searched, digits_task):
    url, name, front = searched
    study = optuna.load_study(study_name=name, storage=url)
    assert study.user_attrs[ATTR_TASK]["fingerprint"] == digits_task.fingerprint
    base = study.user_attrs[ATTR_BASELINE]
    assert base["threads"] == digits_task.threads
    assert base["latency_batch_size"] == 64
    assert front.baseline["accuracy"] == base["accuracy"]


def test_resume_continues_to_n_trials_without_repeating(tmp_path, ray_session, digits_task):
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    space = SearchSpace.default().narrow("quant_bits", choices=[32, 8])
    Search(digits_task, space, storage=url, study_name="r", n_trials=4, seed=1).run()
    study = optuna.load_study(study_name="r", storage=url)
    first = [_params_key(t) for t in study.trials]
    assert len(first) == 4
    Search(digits_task, storage=url, study_name="r", n_trials=8, seed=1).run()
    study = optuna.load_study(study_name="r", storage=url)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 8
    assert len(study.trials) == 8
    keys = [_params_key(t) for t in study.trials]
    assert keys[:4] == first
    assert len(set(keys)) == 8, "a resumed study must not replay earlier configs"
    # a finished study is not re-run
    Search(digits_task, storage=url, study_name="r", n_trials=8, seed=1).run()
    assert len(optuna.load_study(study_name="r", storage=url).trials) == 8


def test_accuracy_constraint_excludes_infeasible_trials(tmp_path, ray_session, digits_task):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    space = SearchSpace.default().narrow("prune_ratio", low=0.85, high=0.95).fix(
        "learning_rate", 1e-4
    ).fix("quant_bits", 8)
    front = Search(
        digits_task, space, storage=url, study_name="c", n_trials=3, max_accuracy_drop=0.0
    ).run()
    study = optuna.load_study(study_name="c", storage=url)
    infeasible = [t for t in study.trials if any(v > 0 for v in t.constraints.values())]
    assert infeasible, "pruning 85-95% at a tiny learning rate must cost accuracy"
    assert {c.trial for c in front}.isdisjoint({t.number for t in infeasible})
    assert {c.trial for c in front} == {t.number for t in study.best_trials}


def test_any_optuna_sampler_runs_even_one_that_does_not_pickle(tmp_path, ray_session,
                                                               digits_task):
    """Tune pickles its searcher into its experiment state; Optuna 5.1's NSGA-II sampler
    holds a thread lock and does not pickle. The search must run anyway."""
    import pickle

    sampler = optuna.samplers.NSGAIISampler(seed=0, population_size=4)
    with pytest.raises(TypeError):
        pickle.dumps(sampler)  # if this passes, Optuna changed and the test guards nothing
    url = f"sqlite:///{tmp_path / 'nsga.db'}"
    space = SearchSpace.default().fix("quant_bits", 32)
    Search(digits_task, space, storage=url, study_name="n", n_trials=3, sampler=sampler,
           seed_configs=False, retime_rounds=0, progress=False).run()
    study = optuna.load_study(study_name="n", storage=url)
    assert len([t for t in study.trials if t.state.is_finished()]) == 3


def test_operator_that_cannot_apply_is_refused_before_the_study_is_written(
    tmp_path, caplog, ray_session
):
    from tests.objectives.models import FunctionalOnly, image_task

    task = image_task(FunctionalOnly(), name="functional", epochs=2)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    space = SearchSpace.default().fix("quant_bits", 8)
    with pytest.raises(SearchArgumentError) as err:
        Search(task, space, storage=url, study_name="f", n_trials=2).run()
    message = str(err.value)
    assert "\n" not in message
    assert "quant_bits=8" in message and "remove 8 from quant_bits" in message
    assert "prune_ratio=0.5" in message and "fix prune_ratio at 0" in message
    assert optuna.get_all_study_names(storage=url) == []

    # The default space instead drops what cannot apply, one warning line each.
    with caplog.at_level(logging.WARNING, logger="search._preflight"):
        front = Search(task, storage=url, study_name="g", n_trials=2, progress=False).run()
    dropped = [r.getMessage() for r in caplog.records if r.name == "search._preflight"]
    assert any(m.startswith("not searching quant_bits=8") for m in dropped)
    assert any(m.startswith("not searching prune_ratio=0.5") for m in dropped)
    stored = optuna.load_study(study_name="g", storage=url)
    assert 8 not in stored.trials[0].distributions["quant_bits"].choices
    assert "prune_ratio" not in stored.trials[0].params
    assert len(front.trials) == 2


def test_resume_with_another_space_is_refused(searched, digits_task):
    url, name, _ = searched
    before = len(optuna.load_study(study_name=name, storage=url).trials)
    with pytest.raises(StudyMismatchError, match="another search space"):
        Search(
            digits_task,
            SearchSpace.default().fix("quant_bits", 8),
            storage=url,
            study_name=name,
            n_trials=20,
        ).run()
    with pytest.raises(StudyMismatchError, match="max_accuracy_drop"):
        Search(digits_task, storage=url, study_name=name, n_trials=20, max_accuracy_drop=0.2).run()
    assert len(optuna.load_study(study_name=name, storage=url).trials) == before


def test_resume_with_another_task_is_refused(searched):
    from objectives.tasks import digits

    url, name, _ = searched
    with pytest.raises(StudyMismatchError, match="fingerprint"):
        Search(digits(finetune_epochs=3), storage=url, study_name=name, n_trials=20).run()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"max_concurrent_trials": -1}, "max_concurrent_trials"),
        ({"max_accuracy_drop": 2.0}, "max_accuracy_drop"),
        ({"seed": -3}, "seed"),
        ({"study_name": "  "}, "study_name"),
    ],
)
def test_bad_arguments(tmp_path, digits_task, kwargs, needle):
    with pytest.raises(SearchArgumentError, match=needle):
        Search(digits_task, storage=f"sqlite:///{tmp_path / 'x.db'}", **kwargs)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("redis://localhost/0", "not supported"),
        ("not a url", "not a database URL"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:////nonexistent-dir/x.db", "does not exist"),
    ],
)
def test_bad_storage(digits_task, url, needle):
    with pytest.raises(StorageError, match=needle):
        Search(digits_task, storage=url)


def test_gpu_settings_are_checked_before_work(tmp_path, digits_task, ray_session):
    url = f"sqlite:///{tmp_path / 'gpu.db'}"
    with pytest.raises(SearchArgumentError, match="CPU only"):
        Search(digits_task, storage=url, gpus_per_trial=0.5, progress=False).run()
    per_layer = SearchSpace.default().per_layer_precision(6.0, 12.0)
    with pytest.raises(SearchArgumentError, match="bit_budget stores layers int8/int4"):
        Search(digits_task, per_layer, storage=url, gpus_per_trial=0.5, progress=False).run()
    space = SearchSpace.default().narrow("quant_bits", choices=[32, 16])
    import ray

    if ray.cluster_resources().get("GPU", 0) == 0:
        with pytest.raises(SearchArgumentError, match="GPUs"):
            Search(digits_task, space, storage=url, gpus_per_trial=0.5, progress=False).run()
    assert optuna.get_all_study_names(url) == []


def test_hardware_and_coverage_are_recorded_on_baseline_trials_and_recipes(searched, capsys):
    from objectives import describe_hardware
    from search import Recipe, StudyInfo
    from search.view import format_status, print_front

    url, name, front = searched
    study = optuna.load_study(study_name=name, storage=url)
    hardware = study.user_attrs[ATTR_BASELINE]["hardware"]
    assert hardware == describe_hardware("cpu", 1)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(t.user_attrs["hardware"] == hardware for t in complete)
    # Each trial timed the teacher beside its artifact; the objective is the artifact's
    # latency relative to it, in the baseline's terms.
    baseline_ms = study.user_attrs[ATTR_BASELINE]["latency_ms"]
    for t in complete:
        a = t.user_attrs
        assert t.values[1] == pytest.approx(
            a["latency_raw_ms"] * baseline_ms / a["reference_latency_ms"])
    for t in complete:
        # The digits MLP has only Linear layers: every precision covers all its weights.
        assert t.user_attrs["quant_coverage"] == 1.0, t.params
        kept = t.user_attrs["num_parameters"] / t.user_attrs["params_before"]
        assert kept <= 1.0
        if t.params.get("prune_ratio", 0.0) >= 0.2:
            assert kept < 0.9, t.params

    # The hardware probe timed the teacher at each precision of the space; seeds skip
    # the precisions it found slower than fp32 here (bf16 on a CPU without native bf16).
    probe = study.user_attrs[ATTR_BASELINE]["precision_latency_ms"]
    assert set(probe) == {"32", "16", "8"} and all(v > 0 for v in probe.values())
    seeded = {t.params.get("quant_bits") for t in study.trials
              if t.user_attrs.get("slimsearch_seed_config") == "seed"}
    from search._seeds import slower_precisions

    # Slower than fp32 beyond the noise margin (SLOWER_MARGIN) is what the seeds skip.
    assert (16 in seeded) == (16 not in slower_precisions(study.user_attrs[ATTR_BASELINE]))

    info = StudyInfo.from_study(study, url)
    recipe = Recipe.from_candidate(next(iter(front)), info)
    assert recipe.hardware == hardware
    assert Recipe.from_yaml(recipe.to_yaml()) == recipe

    print_front(front)
    out = capsys.readouterr().out
    assert "latency measured on" in out and "coverage" in out
    from search.results import status_of

    assert f"latency measured on: {hardware}" in format_status(status_of(study, info))
