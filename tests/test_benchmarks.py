"""The benchmarks' own arithmetic: hypervolume, the shared normalisation, the arms check.

Benchmarks run on demand and write docs/benchmarks.md; what they compute from a study is
checked here on hand-built studies whose answers are known.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from benchmarks._hypervolume import (
    REFERENCE,
    common_baseline,
    exclusive_hypervolume,
    hypervolume,
)

BASE = {"accuracy": 1.0, "latency_ms": 10.0, "size_bytes": 1000.0}


def _study(points, *, base=BASE, infeasible=(), failed=0, beside=None):
    """A (maximise accuracy, minimise latency, minimise size) study holding ``points``.

    With ``beside`` (raw artifact ms, teacher ms timed beside it) per point, the trials
    are read against the teacher as slimsearch's trials are: the latency objective is
    that ratio times the study's baseline latency (``search.run._worker.report_of``).
    """
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("slimsearch_baseline", dict(base))
    for i, p in enumerate(points):
        attrs = {}
        if beside is not None:
            raw, ref = beside[i]
            attrs = {"latency_raw_ms": raw, "reference_latency_ms": ref}
            p = (p[0], raw * base["latency_ms"] / ref, p[2])
        study.add_trial(create_trial(values=list(p), constraints={"drop": 0.0},
                                     user_attrs=attrs))
    for p in infeasible:
        study.add_trial(create_trial(values=list(p), constraints={"drop": 0.01}))
    for _ in range(failed):
        study.add_trial(create_trial(state=TrialState.FAIL))
    return study


def test_hypervolume_of_one_point_is_its_box_to_the_reference():
    # Normalised (-0.95, 0.5, 0.5) against (-0.9, 1.5, 1.5): 0.05 x 1 x 1.
    study = _study([(0.95, 5.0, 500.0)])
    assert hypervolume(study) == pytest.approx(0.05)
    assert list(REFERENCE) == [-0.9, 1.5, 1.5]


def test_hypervolume_counts_feasible_complete_trials_inside_the_reference_only():
    dominated = (0.92, 6.0, 600.0)  # inside the first point's box: adds nothing
    outside = (0.99, 20.0, 100.0)  # 2x the teacher's latency: beyond the reference
    study = _study([(0.95, 5.0, 500.0), dominated, outside],
                   infeasible=[(0.99, 1.0, 100.0)], failed=2)
    assert hypervolume(study) == pytest.approx(0.05)
    # Two points that do not dominate each other: the union of their boxes.
    two = _study([(0.95, 5.0, 500.0), (0.92, 2.5, 500.0)])
    assert hypervolume(two) == pytest.approx(0.05 + 0.02 * 0.25)
    # Only the first trials count with ``upto``.
    assert hypervolume(two, upto=1) == pytest.approx(0.05)
    assert hypervolume(_study([])) == 0.0


def test_exclusive_hypervolume_is_what_each_study_alone_adds_to_the_joint_front():
    # a: one point with box 0.05 x 1 x 1; b: a point outside a's box, and one inside it.
    a = _study([(0.95, 5.0, 500.0)])
    b = _study([(0.92, 2.5, 500.0), (0.93, 6.0, 600.0)])
    only = exclusive_hypervolume({"a": a, "b": b}, BASE)
    # joint 0.05 + 0.02 * 0.25 * 1; without a: b's boxes 0.02 * 1.25 ∪ 0.03 * 0.9 * 0.9.
    b_alone = 0.02 * 1.25 * 1.0 + 0.03 * 0.9 * 0.9 - 0.02 * 0.9 * 0.9
    assert only["a"] == pytest.approx(0.05 + 0.005 - b_alone)
    assert only["b"] == pytest.approx(0.005)
    # A study every point of which the other dominates adds nothing; alone, all it has.
    assert exclusive_hypervolume({"a": a, "dominated": _study([(0.92, 6.0, 600.0)])},
                                 BASE)["dominated"] == 0.0
    assert exclusive_hypervolume({"a": a}, BASE) == {"a": pytest.approx(0.05)}
    # Read against the one baseline given, not each study's own.
    slow_teacher = _study([(0.95, 5.0, 500.0)], base={**BASE, "latency_ms": 20.0})
    assert exclusive_hypervolume({"x": slow_teacher}, BASE)["x"] == pytest.approx(0.05)


def test_a_shared_baseline_normalises_every_study_by_one_teacher_latency():
    fast = _study([(0.95, 5.0, 500.0)], base={**BASE, "latency_ms": 8.0})
    slow = _study([(0.95, 5.0, 500.0)], base={**BASE, "latency_ms": 12.0})
    mid = _study([(0.95, 5.0, 500.0)], base={**BASE, "latency_ms": 10.0})
    # Each study's own teacher latency moves the same front.
    assert hypervolume(fast) < hypervolume(mid) < hypervolume(slow)
    common = common_baseline([fast, slow, mid])
    assert common == {"accuracy": 1.0, "size_bytes": 1000.0, "latency_ms": 10.0}
    assert hypervolume(fast, baseline=common) == hypervolume(slow, baseline=common)
    other = _study([], base={**BASE, "size_bytes": 2000.0})
    with pytest.raises(ValueError, match="studies of different teachers: size_bytes"):
        common_baseline([fast, other])


def test_trials_timed_beside_the_teacher_are_read_as_the_ratio_they_measured():
    from benchmarks._hypervolume import latency_share

    # The same trial (artifact 2.5 ms beside a 5 ms teacher: half the teacher's time) in
    # two studies whose one baseline measurement differs by 1.5x: the objectives differ
    # by 1.5x, the hypervolumes do not, under any shared baseline.
    fast = _study([(0.95, None, 500.0)], base={**BASE, "latency_ms": 8.0}, beside=[(2.5, 5.0)])
    slow = _study([(0.95, None, 500.0)], base={**BASE, "latency_ms": 12.0}, beside=[(2.5, 5.0)])
    assert slow.trials[0].values[1] == pytest.approx(1.5 * fast.trials[0].values[1])
    common = common_baseline([fast, slow])
    assert latency_share(fast.trials[0], common) == latency_share(slow.trials[0], common) == 0.5
    assert hypervolume(fast, baseline=common) == pytest.approx(0.05 * 1.0 * 1.0)
    assert hypervolume(slow, baseline=common) == hypervolume(fast, baseline=common)
    assert hypervolume(slow) == hypervolume(fast)
    # A trial without the teacher beside it is read against the baseline given.
    plain = _study([(0.95, 5.0, 500.0)])
    assert latency_share(plain.trials[0], {**BASE, "latency_ms": 20.0}) == 0.25


def test_mixed_benchmark_refuses_arms_it_cannot_compare():
    from benchmarks._mixed import ARMS, run

    assert ARMS == ("uniform", "per-layer", "per-layer, latency saving", "per-layer or uniform",
                    "per-layer, fp32 reachable")
    for arms in (("uniform",), ("per-layer",), ("uniform", "per-layer, latency budget")):
        with pytest.raises(ValueError, match="choose at least one uniform and one per-layer"):
            run(lambda: pytest.fail("the task is built only after the arms are checked"),
                "t", arms=arms)


def test_mixed_benchmark_refuses_an_unknown_sampler_and_no_workers():
    from benchmarks._mixed import SAMPLERS, _sampler, run

    for kw in ({"sampler": "cmaes"}, {"workers": 0}):
        with pytest.raises(ValueError, match="choose a sampler among"):
            run(lambda: pytest.fail("the task is built only after the options are checked"),
                "t", arms=("uniform", "per-layer"), **kw)
    assert SAMPLERS == ("tpe", "multivariate")
    assert _sampler("tpe", 3) is None  # the search's own default
    assert isinstance(_sampler("multivariate", 3), optuna.samplers.TPESampler)


def test_runs_with_another_sampler_or_workers_get_their_own_studies_and_section():
    from benchmarks._mixed import variant

    assert variant("tpe", 2) == ("", "")  # the default run keeps its names
    assert variant("multivariate", 2) == ("-multivariate", ", multivariate TPE")
    assert variant("tpe", 1) == ("-w1", ", 1 trial at a time")
    assert variant("multivariate", 4) == ("-multivariate-w4",
                                          ", multivariate TPE, 4 trials at a time")


def test_equal_size_readings_pick_the_trials_they_name():
    from benchmarks._mixed import NEAR, readings

    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for values, test, drop in [((0.97, 5.0, 900.0), 0.95, 0.0), ((0.96, 5.0, 400.0), 0.94, 0.0),
                               ((0.969, 5.0, 700.0), 0.96, 0.0), ((0.90, 5.0, 100.0), 0.88, 0.0),
                               ((0.99, 1.0, 50.0), 0.99, 0.01)]:
        study.add_trial(create_trial(values=list(values), constraints={"drop": drop},
                                     user_attrs={"test_accuracy": test}))
    r = readings(study, int8_size=800.0, int8_accuracy=0.97)
    # No larger than 800: the most accurate is 0.969 (the infeasible 0.99 never counts).
    assert (r["acc_at_int8_size"], r["test_at_int8_size"]) == (0.969, 0.96)
    # At least 0.97: only the 900-byte trial; within half a point (>= 0.965): the
    # 700-byte one (0.96, a point below, is not).
    assert (r["size_at_int8_acc"], r["test_at_int8_acc"]) == (900.0, 0.95)
    assert NEAR == 0.005
    assert (r["size_near_int8_acc"], r["test_near_int8_acc"]) == (700.0, 0.96)
    none = readings(study, int8_size=50.0, int8_accuracy=0.999)
    assert none["acc_at_int8_size"] is None and none["size_near_int8_acc"] is None


@pytest.mark.parametrize(("args", "says"), [
    (["--only", "mixed", "--seeds", "0"], "need at least one seed"),
    (["--only", "mixed", "--first-seed", "-1"], "a first seed of 0 or more"),
    (["--only", "trust", "--first-seed", "1"], "only the mixed benchmark's section"),
    (["--only", "mixed", "--workers", "0"], "need at least one trial at a time"),
    (["--only", "mixed", "--sampler", "cmaes"], "invalid choice: 'cmaes'"),
])
def test_benchmark_cli_refuses_bad_seeds_in_one_line(args, says):
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-m", "benchmarks", *args],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_layer_timing_benchmark_compares_the_tables_and_allocations_with_the_whole_model(
        digits_task, tmp_path, monkeypatch):
    from benchmarks import _layer_timing, _report

    monkeypatch.setattr(_report, "DOC", tmp_path / "benchmarks.md")
    monkeypatch.setattr(_layer_timing, "ROUNDS", 1)
    got = _layer_timing.run(lambda: digits_task, "digits")
    text = (tmp_path / "benchmarks.md").read_text(encoding="utf-8")
    assert "<!-- bench:layer-timing-digits -->" in text
    # Every-layer allocations and the random mixes; digits has no tied head.
    assert text.count("| every layer ") == 3 and text.count("| random mix ") == 6
    assert "| every layer 8 but" not in text and "| only " not in text
    # What allocate chooses at three sizes and two savings, switches charged or not:
    # three layers are too few to measure a switch's cost, so both are the same.
    assert text.count(", switches charged (") == 6
    assert text.count(", switches not charged (") == 6
    assert "none measured a change" in text
    assert got["mae_in"] >= 0 and got["mae_alone"] >= 0
    assert got["mae_switches"] == pytest.approx(got["mae_in"])


def test_spearman_reads_order_only():
    from benchmarks._layer_timing import _spearman

    assert _spearman([1.0, 2.0, 3.0], [10.0, 20.0, 90.0]) == pytest.approx(1.0)
    assert _spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
