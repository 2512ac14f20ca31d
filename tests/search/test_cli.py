from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from search import Recipe
from search._cli import main


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=600
    )


def test_front_json_matches_optuna(searched, capsys):
    url, name, _ = searched
    assert main(["front", "--storage", url, "--study", name, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["baseline"]) >= {"accuracy", "latency_ms", "size_bytes"}
    study = optuna.load_study(study_name=name, storage=url)
    assert sorted(c["trial"] for c in data["front"]) == sorted(t.number for t in study.best_trials)
    for c in data["front"]:
        assert set(c) >= {"trial", "params", "accuracy", "latency_ms", "size_bytes"}


def test_export_then_apply_json(searched, tmp_path, capsys):
    url, name, _ = searched
    out = tmp_path / "recipe.yaml"
    assert main(["export", "--storage", url, "--study", name, "--prefer", "size",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["apply", str(out), "-o", str(tmp_path / "model"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"accuracy", "test_accuracy", "latency_ms", "size_bytes", "hardware",
                         "accuracy_delta", "accuracy_delta_se"}
    assert (tmp_path / "model" / "model.safetensors").stat().st_size == data["size_bytes"]
    # the re-applied model's own paired difference to the teacher, and its margin
    recipe = Recipe.load(out)
    assert data["accuracy_delta_se"] > 0 and recipe.accuracy_confidence == 0.9
    assert main(["apply", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    margin = 100 * 1.2815516 * data["accuracy_delta_se"]
    assert first.startswith(f"re-applied {out}: accuracy {data['accuracy']:.4f} (")
    assert f" ± {margin:.2f} pts)" in first


def test_export_keeps_to_the_studys_drop_and_warns_for_a_trial_that_does_not_hold(
    searched_copy, tmp_path, capsys
):
    """Without --max-accuracy-drop, export holds to the study's stored drop (0.05) —
    the lower bound and the confirmation rows included; --trial N of a point that does
    not hold on the confirmation rows is exported with one warning line."""
    from search import StudyInfo
    from tests.search._stored import add_trial

    url, name = searched_copy
    study = optuna.load_study(study_name=name, storage=url)
    info = StudyInfo.from_study(study, url)
    base = info.baseline["accuracy"]
    # The smallest, fastest point: within 0.05 on validation at the bound (-4 ± 0.1 pts),
    # but 20 points down on the confirmation rows.
    lucky = add_trial(study, info, accuracy=base - 0.04, se=0.001, latency_ms=1e-3,
                      size_bytes=1, confirm_delta=-0.2, confirm_delta_se=0.001)
    front = [t.number for t in study.best_trials]
    assert lucky in front and len(front) >= 2

    out = tmp_path / "size.yaml"
    assert main(["export", "--storage", url, "--study", name, "--prefer", "size",
                 "-o", str(out)]) == 0
    chosen = Recipe.load(out).source.trial
    assert chosen != lucky and chosen in front
    others = [t for t in study.best_trials if t.number != lucky]
    assert chosen == min(others, key=lambda t: (t.values[2], t.number)).number
    capsys.readouterr()

    out = tmp_path / "asked.yaml"
    assert main(["export", "--storage", url, "--study", name, "--trial", str(lucky),
                 "-o", str(out)]) == 0
    assert Recipe.load(out).source.trial == lucky
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"trial {lucky} does not hold at max_accuracy_drop=0.05 on the confirmation " \
        "rows" in err[0]

    # A drop given explicitly replaces the study's: at 0.3 the lucky point holds.
    out = tmp_path / "wide.yaml"
    assert main(["export", "--storage", url, "--study", name, "--prefer", "size",
                 "--max-accuracy-drop", "0.3", "-o", str(out)]) == 0
    assert Recipe.load(out).source.trial == lucky
    assert capsys.readouterr().err == ""


def test_front_json_has_the_retimed_baseline(searched, capsys):
    url, name, front = searched
    assert main(["front", "--storage", url, "--study", name, "--json"]) == 0
    base = json.loads(capsys.readouterr().out)["baseline"]
    assert base["latency_ms_alone"] == front.baseline["latency_ms_alone"] > 0
    assert base["latency_ms_search"] == base["latency_ms"] == front.baseline["latency_ms"]
    assert base["retimed_hardware"] == front.baseline["retimed_hardware"]


def test_export_a_given_trial(searched, tmp_path, capsys):
    url, name, front = searched
    trial = front.candidates[0].trial
    out = tmp_path / "r.yaml"
    assert main(["export", "--storage", url, "--study", name, "--trial", str(trial),
                 "-o", str(out)]) == 0
    assert Recipe.load(out).source.trial == trial


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--task", "imagenet", "--trials", "2"], "is not a built-in task"),
        (["run", "--task", "digits", "--trials", "0"], "must be at least 1"),
        (["run", "--task", "digits", "--max-accuracy-drop", "5"], "fraction"),
        (["front", "--storage", "sqlite:///{tmp}/missing.db", "--study", "x"], "no database file"),
        (["front", "--storage", "{url}", "--study", "nope"], "no study named 'nope'"),
        (["export", "--storage", "{url}", "--study", "{name}", "--trial", "999", "-o", "x.yaml"],
         "not on the Pareto front"),
        (["apply", "{tmp}/missing.yaml"], "cannot read recipe"),
        (["run", "--task", "digits", "--space", "{tmp}/missing.yaml"], "cannot read search space"),
        (["front", "--storage", "ftp://x", "--study", "x"], "not supported"),
        (["frobnicate"], "invalid choice"),
        (["run", "--task", "digits", "--storage", "{url}", "--study", "new",
          "--warm-start", "nope"], "warm_start study 'nope' does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(searched, tmp_path, capsys, args, needle):
    url, name, _ = searched
    args = [a.format(tmp=tmp_path, url=url, name=name) for a in args]
    with pytest.raises(SystemExit) as exit_:
        raise SystemExit(main(args))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_cli_process_has_no_traceback(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("quant_bits: {choices: [3]}\n")
    proc = _cli("run", "--task", "digits", "--storage", f"sqlite:///{tmp_path}/s.db",
                "--space", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("slimsearch: error:")
    assert "quant_bits" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.db").exists() or optuna.get_all_study_names(
        f"sqlite:///{tmp_path}/s.db") == []


def test_run_resume_and_front_end_to_end(tmp_path, ray_session, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    space = tmp_path / "space.yaml"
    space.write_text("prune_ratio: {low: 0.0, high: 0.6}\nquant_bits: {choices: [32, 8]}\n")
    assert main(["run", "--task", "digits", "--trials", "3", "--storage", url, "--study", "c",
                 "--space", str(space), "--max-accuracy-drop", "0.05", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["front"]) >= 1
    assert main(["run", "--task", "digits", "--trials", "5", "--storage", url,
                 "--study", "c"]) == 0
    assert "Pareto front of 'c'" in capsys.readouterr().out
    study = optuna.load_study(study_name="c", storage=url)
    assert len(study.trials) == 5


_USER_TASK = '''
import torch
from torch import nn

from objectives import Split, Task


class {cls}(nn.Module):
    def __init__(self):
        super().__init__()
        {body}

    def forward(self, x):
        {forward}


def make_task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=g)
    y = (x[:, 0] > 0).long()
    split = Split(x, y)
    torch.manual_seed(0)
    return Task(name="{cls}", teacher={cls}(), train=split, val=split, test=split,
                num_classes=2, finetune_epochs=1, latency_batch_size=8)
'''


def _user_task_file(tmp_path, *, quantizable: bool):
    if quantizable:
        cls = "UserMLP"
        body = "self.net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))"
        fwd = "return self.net(x)"
    else:
        cls, body = "UserFunctional", "self.w = nn.Parameter(torch.randn(2, 8) * 0.1)"
        fwd = "return nn.functional.linear(x, self.w)"
    path = tmp_path / f"{cls.lower()}.py"
    path.write_text(_USER_TASK.format(cls=cls, body=body, forward=fwd))
    return path


def test_fixed_operator_that_cannot_apply_exits_2_and_writes_nothing(tmp_path):
    task = _user_task_file(tmp_path, quantizable=False)
    space = tmp_path / "space.yaml"
    space.write_text("quant_bits: 8\n")
    db = tmp_path / "s.db"
    proc = _cli("run", "--task", f"{task}:make_task", "--space", str(space),
                "--storage", f"sqlite:///{db}", "--trials", "2")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slimsearch: error: ")
    assert "quant_bits=8" in lines[0] and "UserFunctional" in lines[0]
    assert "remove 8 from quant_bits" in lines[0]
    assert not db.exists() or optuna.get_all_study_names(f"sqlite:///{db}") == []


@pytest.mark.parametrize(
    ("task", "needle"),
    [
        ("nosuchtask", "is not a built-in task"),
        ("no_such_module_xyz:make", "importing 'no_such_module_xyz' failed"),
        ("json:no_such_factory", "has no callable 'no_such_factory'"),
        ("json:dumps", "cannot be built"),
    ],
)
def test_bad_task_reference_is_one_line(tmp_path, task, needle, capsys):
    try:
        code = main(["run", "--task", task, "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_run_with_a_users_task_file(tmp_path, ray_session, capsys):
    task = _user_task_file(tmp_path, quantizable=True)
    url = f"sqlite:///{tmp_path / 'u.db'}"
    space = tmp_path / "space.yaml"
    space.write_text("quant_bits: {choices: [32, 8]}\nprune_ratio: {low: 0.0, high: 0.5}\n")
    assert main(["run", "--task", f"{task}:make_task", "--trials", "2", "--storage", url,
                 "--study", "u", "--space", str(space), "--json", "--no-progress"]) == 0
    front = json.loads(capsys.readouterr().out)["front"]
    assert front and all(c["quant_coverage"] == 1.0 for c in front)
    study = optuna.load_study(study_name="u", storage=url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 2 and "FAIL" not in states
    recipe = tmp_path / "r.yaml"
    assert main(["export", "--storage", url, "--study", "u", "-o", str(recipe)]) == 0
    capsys.readouterr()
    assert main(["apply", str(recipe)]) == 2
    assert "--task module:function" in capsys.readouterr().err
    assert main(["apply", str(recipe), "--task", f"{task}:make_task", "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["size_bytes"] > 0
