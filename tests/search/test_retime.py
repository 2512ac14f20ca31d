"""Before a search returns, its front is re-timed alone, interleaved with the teacher, and
those figures are what ``front`` and recipes show (the in-search figure kept beside)."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from objectives import DEFAULT_LOCK_PATH, CompressionConfig, MeasurementLock, retime
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
    assert recipe.hardware == stored["hardware"]  # where the recipe's latency was measured
    assert main(["front", "--storage", url, "--study", name]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the caption may wrap
    assert "(alone)" in out and "in search" in out
    assert f"latency measured on {' '.join(stored['hardware'].split())}" in out


def test_a_finished_retimed_study_is_not_retimed_again(searched_copy, digits_task):
    url, name = searched_copy
    before = optuna.load_study(study_name=name, storage=url).user_attrs[ATTR_RETIMED]
    front = Search(digits_task, storage=url, study_name=name, n_trials=8,
                   progress=False).run()
    after = optuna.load_study(study_name=name, storage=url).user_attrs[ATTR_RETIMED]
    assert after == before  # a new re-timing would have stored new medians
    assert len(front) >= 1
    assert all(c.latency_alone_ms == before["trials"][str(c.trial)] for c in front)


def test_a_study_run_without_retiming_is_retimed_later_under_the_machine_lock(
    ray_session, digits_task, tmp_path
):
    """Off first (nothing stored); a later run of the finished study re-times it — and
    waits for the machine's measurement lock although one worker takes no lock for its
    trials (another driver's trials may be running). One study for both: each costs
    trials on a 2-core machine."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    front = Search(digits_task, storage=url, study_name="off", n_trials=2,
                   max_accuracy_drop=0.05, progress=False, retime_rounds=0).run()
    assert ATTR_RETIMED not in optuna.load_study(study_name="off", storage=url).user_attrs
    assert len(front) >= 1
    assert all(c.latency_alone_ms is None for c in front)

    result: dict[str, object] = {}
    later = Search(digits_task, storage=url, study_name="off", n_trials=2, progress=False,
                   retime_rounds=1, max_concurrent_trials=1)
    assert later.measurement_lock is False  # trials of this search would take no lock
    lock = MeasurementLock(DEFAULT_LOCK_PATH)
    with lock.measuring():  # as another process timing a model
        thread = threading.Thread(target=lambda: result.update(front=later.run()))
        thread.start()
        deadline = time.monotonic() + 10  # a 1-round re-timing of digits takes ~1 s
        while time.monotonic() < deadline:
            assert thread.is_alive(), "re-timed without waiting for the measurement lock"
            time.sleep(0.5)
        stored = optuna.load_study(study_name="off", storage=url).user_attrs
        assert ATTR_RETIMED not in stored
    thread.join(timeout=300)
    lock.close()
    assert not thread.is_alive()
    stored = optuna.load_study(study_name="off", storage=url).user_attrs[ATTR_RETIMED]
    front = result["front"]
    assert stored["rounds"] == 1 and len(front) >= 1
    assert sorted(int(k) for k in stored["trials"]) == sorted(c.trial for c in front)
    assert all(c.latency_alone_ms == stored["trials"][str(c.trial)] for c in front)


def test_a_failed_retime_keeps_the_search_result(searched_copy, digits_task, caplog):
    """A stored front point whose per-layer precisions name a layer the model lacks (a
    corrupted study): re-timing it really fails in the worker; run() logs one warning
    and returns the front with the search's figures."""
    from search import StudyInfo
    from tests.search._stored import add_trial

    url, name = searched_copy
    study = optuna.load_study(study_name=name, storage=url)
    info = StudyInfo.from_study(study, url)
    before = study.user_attrs[ATTR_RETIMED]
    like = study.get_trials(deepcopy=False)[0]
    broken = add_trial(study, info, accuracy=info.baseline["accuracy"] - 0.01, se=0.001,
                       latency_ms=1e-3, size_bytes=1,
                       params={**like.params, "quant_bits": 32, "bit_budget": 6.0},
                       layer_bits='{"no_such_layer": 4}')
    with caplog.at_level("WARNING", logger="search"):
        front = Search(digits_task, storage=url, study_name=name, n_trials=8,
                       progress=False).run()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"
                and r.name.startswith("search")]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    line = warnings[0].getMessage()
    assert line.startswith("re-timing the front failed (") and "no_such_layer" in line
    assert "\n" not in line
    assert broken in {c.trial for c in front}
    assert all(c.latency_alone_ms is None for c in front)  # the search's own figures
    assert front.baseline.get("latency_ms_alone") is None
    assert optuna.load_study(study_name=name, storage=url).user_attrs[ATTR_RETIMED] == before


def test_retime_goes_on_until_its_minimum_span_has_passed(digits_task):
    # A few rounds of a 0.1 ms model fit inside one of the machine's speed regimes; the
    # rounds go on until min_seconds have passed (the noise benchmark measures why).
    t0 = time.perf_counter()
    teacher_ms, (same_ms,) = retime(digits_task, [CompressionConfig()], rounds=1,
                                    min_seconds=1.0)
    assert time.perf_counter() - t0 >= 1.0
    assert teacher_ms > 0 and same_ms > 0


def test_retime_seconds_default_env_and_argument(digits_task, tmp_path, monkeypatch):
    from objectives import RETIME_MIN_SECONDS
    from search import SearchArgumentError

    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.delenv("SLIMSEARCH_RETIME_SECONDS", raising=False)
    assert Search(digits_task, storage=url).retime_seconds == RETIME_MIN_SECONDS == 5.0
    monkeypatch.setenv("SLIMSEARCH_RETIME_SECONDS", "2.5")
    assert Search(digits_task, storage=url).retime_seconds == 2.5
    assert Search(digits_task, storage=url, retime_seconds=0).retime_seconds == 0.0
    for bad in (-1, float("nan"), 601, True, "5"):
        with pytest.raises(SearchArgumentError, match=r"^retime_seconds must be"):
            Search(digits_task, storage=url, retime_seconds=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True, 101])
def test_bad_retime_rounds_are_refused(digits_task, bad, tmp_path):
    from search import SearchArgumentError

    with pytest.raises(SearchArgumentError, match="retime_rounds"):
        Search(digits_task, storage=f"sqlite:///{tmp_path / 's.db'}", retime_rounds=bad)
