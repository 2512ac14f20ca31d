"""Before a search returns, its front is re-timed alone, interleaved with the teacher, and
those figures are what ``front`` and recipes show (the in-search figure kept beside)."""

from __future__ import annotations

import optuna
import pytest

from objectives import CompressionConfig, retime
from search import Recipe, Search, load_front
from search._cli import main
from search.study import ATTR_RETIMED


def test_retime_times_each_config_against_the_teacher(digits_task):
    teacher_ms, (pruned_ms, same_ms) = retime(
        digits_task, [CompressionConfig(prune_ratio=0.75), CompressionConfig()], rounds=2
    )
    assert pruned_ms < teacher_ms / 2  # a quarter of the channels: clearly faster
    assert 0.5 < same_ms / teacher_ms < 2.0  # the teacher's own architecture


def test_search_retimes_its_front_and_recipes_show_it(searched, capsys):
    url, name, _ = searched  # a finished 8-trial, 2-worker search with the defaults
    study = optuna.load_study(study_name=name, storage=url)
    stored = study.user_attrs[ATTR_RETIMED]
    front, info = load_front(url, name)
    assert len(front) >= 1
    assert sorted(int(k) for k in stored["trials"]) == sorted(c.trial for c in front)
    assert stored["rounds"] == 3 and stored["teacher_ms"] > 0 and stored["hardware"]
    assert front.baseline["latency_ms_alone"] == stored["teacher_ms"]
    for c in front:
        assert c.latency_alone_ms == stored["trials"][str(c.trial)]
        assert c.shown_latency_ms == c.latency_alone_ms
        assert c.latency_ms == study.trials[c.trial].values[1]  # what Optuna ranked on
    recipe = Recipe.from_front(front, info)
    chosen = front.get(recipe.source.trial)
    assert recipe.metrics.latency_ms == chosen.latency_alone_ms
    assert recipe.metrics.latency_ms_search == chosen.latency_ms
    assert recipe.baseline.latency_ms == stored["teacher_ms"]
    assert main(["front", "--storage", url, "--study", name]) == 0
    out = capsys.readouterr().out
    assert "(alone)" in out and "in search" in out and "avx" in out.lower()


def test_retime_off_stores_nothing(ray_session, digits_task, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    front = Search(digits_task, storage=url, study_name="off", n_trials=2,
                   max_accuracy_drop=0.05, progress=False, retime_rounds=0).run()
    assert ATTR_RETIMED not in optuna.load_study(study_name="off", storage=url).user_attrs
    assert all(c.latency_alone_ms is None for c in front)


@pytest.mark.parametrize("bad", [-1, 1.5, True, 101])
def test_bad_retime_rounds_are_refused(digits_task, bad, tmp_path):
    from search import SearchArgumentError

    with pytest.raises(SearchArgumentError, match="retime_rounds"):
        Search(digits_task, storage=f"sqlite:///{tmp_path / 's.db'}", retime_rounds=bad)
