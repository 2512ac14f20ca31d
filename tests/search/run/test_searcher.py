"""``StudySearcher`` on a real Optuna study (SQLite): what it asks the sampler for."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.storages import RDBStorage

from search.run._searcher import StudySearcher
from spaces import SearchSpace


def _tpe(**kw) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=0, n_startup_trials=6, **kw)


# Independent TPE (the search's default) and grouped multivariate TPE (the mixed
# benchmark's other sampler, which models the conditional parameters as their own group).
@pytest.mark.parametrize("sampler_kw", [{}, {"multivariate": True, "group": True}],
                         ids=["independent", "multivariate-group"])
def test_uniform_trials_draw_no_allocation_parameters_before_and_after_tpe_starts(
        tmp_path, sampler_kw):
    space = SearchSpace.default().per_layer_precision(bases=(32, 16), uniform=(8, 4),
                                                      saving=(0.0, 1.0))
    storage = RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="conditional",
                                directions=["maximize", "minimize", "minimize"],
                                sampler=_tpe(**sampler_kw))
    searcher = StudySearcher(study=study, storage=storage, space=space.distributions(),
                             baseline_accuracy=0.9, max_accuracy_drop=None, n_trials=24,
                             conditions=space.conditions())
    drawn = []
    for i in range(24):
        params = searcher.suggest(str(i))
        assert space.contains({**params, **space.fixed_values()}), params
        drawn.append(params)
        # Told at once, so that TPE (after its 6 random trials) models what came before:
        # allocated trials better on accuracy, uniform ones smaller.
        uniform = params["quant_bits"] in (8, 4)
        study.tell(study.trials[-1].number, [0.8 if uniform else 0.9, 1.0, 1.0 if uniform else 2.0])
    kinds = [p["quant_bits"] in (8, 4) for p in drawn]
    # Both kinds are drawn, by the random start and by TPE.
    assert any(kinds[:6]) and not all(kinds[:6])
    assert any(kinds[6:]) and not all(kinds[6:])
    for p, uniform in zip(drawn, kinds, strict=True):
        assert ("bit_budget" in p and "latency_saving" in p) is not uniform
