from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

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
    assert set(data) == {"accuracy", "test_accuracy", "latency_ms", "size_bytes"}
    assert (tmp_path / "model" / "model.safetensors").stat().st_size == data["size_bytes"]


def test_export_a_given_trial(searched, tmp_path, capsys):
    url, name, front = searched
    trial = front.candidates[0].trial
    out = tmp_path / "r.yaml"
    assert main(["export", "--storage", url, "--study", name, "--trial", str(trial),
                 "-o", str(out)]) == 0
    from search import Recipe

    assert Recipe.load(out).source.trial == trial


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--task", "imagenet", "--trials", "2"], "invalid choice"),
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
                 "--space", str(space), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["front"]) >= 1
    assert main(["run", "--task", "digits", "--trials", "5", "--storage", url,
                 "--study", "c"]) == 0
    assert "Pareto front of 'c'" in capsys.readouterr().out
    study = optuna.load_study(study_name="c", storage=url)
    assert len(study.trials) == 5
