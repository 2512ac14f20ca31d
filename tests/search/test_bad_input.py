"""Bad input, one table: every case gets one line naming the problem, exit status 2 from
the CLI, and leaves the study database exactly as it was.

The cases cover search-space files, recipe files, storage URLs, CLI arguments, models
the pipeline cannot handle and studies that do not exist. Cases that are not CLI calls
(a model handed to the Python API) must raise one of the errors the CLI turns into
status 2.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml

from search._cli import _one_line, _user_errors, main


@dataclass(frozen=True)
class Case:
    """``argv`` for the CLI (``{db}``, ``{study}``, ``{dir}`` filled in) or a callable."""

    id: str
    needle: str
    argv: tuple[str, ...] = ()
    call: Callable[[Path], object] | None = None
    env: tuple[tuple[str, str], ...] = ()
    secret: str = ""  # must not appear in the output
    untouched: str = ""  # a file in {dir} whose bytes must not change (or must not appear)


def _bad_teacher(_: Path) -> object:
    from objectives import Task
    from tests.objectives.models import synthetic_images

    split = synthetic_images(16, 4, 0)
    return Task(name="t", teacher="resnet50.pt", train=split, val=split, test=split,
                num_classes=4)


def _labels_out_of_range(_: Path) -> object:
    from objectives import Task
    from tests.objectives.models import ConvOnly, synthetic_images

    split = synthetic_images(16, 4, 0)
    return Task(name="t", teacher=ConvOnly(), train=split, val=split, test=split,
                num_classes=2)


def _int8_without_linear_layers(_: Path) -> object:
    from objectives import CompressionConfig, evaluate
    from tests.objectives.models import FunctionalOnly, image_task

    return evaluate(image_task(FunctionalOnly(), name="functional", epochs=1),
                    CompressionConfig(quant_bits=8))


def _task_is_not_a_task(_: Path) -> object:
    from search import Search

    return Search("digits", storage="sqlite:///:memory:")


RUN = ("run", "--task", "digits", "--storage", "sqlite:///{db}", "--study", "{study}")
FRONT = ("front", "--storage", "sqlite:///{db}", "--study", "{study}")
CASES = [
    # --- search-space files
    Case("space-misspelt-param", "prune_ration", (*RUN, "--space", "{dir}/misspelt.yaml")),
    Case("space-wrong-type", "prune_ratio.low", (*RUN, "--space", "{dir}/wrong-type.yaml")),
    Case("space-low-above-high", "prune_ratio", (*RUN, "--space", "{dir}/inverted.yaml")),
    Case("space-truncated", "not valid YAML", (*RUN, "--space", "{dir}/truncated-space.yaml")),
    Case("space-budget-beside-uniform", "bit_budget: fixed at 8.5, but quant_bits [8]",
         (*RUN, "--space", "{dir}/budget-beside-uniform.yaml")),
    Case("space-missing-file", "cannot read search space file",
         (*RUN, "--space", "{dir}/nope.yaml")),
    Case("space-python-tag", "YAML", (*RUN, "--space", "{dir}/evil-space.yaml"),
         untouched="pwned-space"),
    # --- recipe files
    Case("recipe-misspelt-key", "prune_ratoi", ("apply", "{dir}/misspelt-recipe.yaml")),
    Case("recipe-wrong-type", "quant_bits", ("apply", "{dir}/wrong-type-recipe.yaml")),
    Case("recipe-other-task", "imagenet", ("apply", "{dir}/other-task.yaml")),
    Case("recipe-other-model", "fingerprint", ("apply", "{dir}/other-model.yaml")),
    Case("recipe-truncated", "recipe", ("apply", "{dir}/truncated-recipe.yaml")),
    Case("recipe-empty", "a recipe is a YAML mapping", ("apply", "{dir}/empty.yaml")),
    Case("recipe-binary", "cannot read recipe", ("apply", "{dir}/binary.yaml")),
    Case("recipe-missing-file", "cannot read recipe", ("apply", "{dir}/missing.yaml")),
    Case("recipe-python-tag", "not valid YAML", ("apply", "{dir}/evil-recipe.yaml"),
         untouched="pwned-recipe"),
    # --- storage URLs
    Case("storage-bad-scheme", "not supported",
         ("front", "--storage", "redis://localhost/0", "--study", "{study}")),
    Case("storage-not-a-url", "not a database URL",
         ("front", "--storage", "study.db", "--study", "{study}")),
    Case("storage-postgres-unreachable", "cannot open storage",
         ("status", "--storage", "postgresql+psycopg2://slim:s3cr3t-pw@127.0.0.1:1/db",
          "--study", "{study}"), secret="s3cr3t-pw"),
    Case("storage-mysql-unreachable", "cannot open storage",
         ("front", "--storage", "mysql+pymysql://root:hunter2-pw@127.0.0.1:2/test",
          "--study", "{study}"), secret="hunter2-pw"),
    Case("storage-read-only-file", "read-only",
         ("run", "--task", "digits", "--storage", "sqlite:///{dir}/read-only.db"),
         untouched="read-only.db"),
    Case("storage-directory", "is a directory",
         ("front", "--storage", "sqlite:///{dir}", "--study", "{study}")),
    Case("storage-not-a-database", "not a usable SQLite database",
         ("front", "--storage", "sqlite:///{dir}/garbage.db", "--study", "{study}"),
         untouched="garbage.db"),
    Case("storage-in-memory", "in-memory",
         ("run", "--task", "digits", "--storage", "sqlite:///:memory:")),
    Case("storage-missing-directory", "does not exist",
         ("run", "--task", "digits", "--storage", "sqlite:///{dir}/no/such/dir/x.db")),
    Case("storage-missing-file", "no database file",
         ("status", "--storage", "sqlite:///{dir}/absent.db", "--study", "{study}"),
         untouched="absent.db"),
    Case("storage-bad-grace-env", "SLIMSEARCH_GRACE_PERIOD", FRONT,
         env=(("SLIMSEARCH_GRACE_PERIOD", "soon"),)),
    # --- CLI arguments
    Case("cli-zero-trials", "must be at least 1", (*RUN, "--trials", "0")),
    Case("cli-retime-seconds-negative", "--retime-seconds: '-1' is not a number of seconds",
         (*RUN, "--retime-seconds", "-1")),
    Case("cli-retime-seconds-env", "$SLIMSEARCH_RETIME_SECONDS must be a number of seconds",
         RUN, env=(("SLIMSEARCH_RETIME_SECONDS", "soon"),)),
    Case("cli-trials-not-int", "is not an integer", (*RUN, "--trials", "many")),
    Case("cli-drop-not-fraction", "fraction", (*RUN, "--max-accuracy-drop", "5")),
    Case("cli-unknown-task", "is not a built-in task", ("run", "--task", "imagenet")),
    Case("cli-missing-task", "required", ("run", "--trials", "3")),
    Case("cli-bad-prefer", "invalid choice",
         ("export", "--storage", "sqlite:///{db}", "--study", "{study}", "--prefer", "fast",
          "-o", "{dir}/r.yaml")),
    Case("cli-trial-not-on-front", "not on the Pareto front",
         ("export", "--storage", "sqlite:///{db}", "--study", "{study}", "--trial", "9999",
          "-o", "{dir}/r.yaml"), untouched="r.yaml"),
    Case("cli-unknown-command", "invalid choice", ("serve",)),
    Case("cli-status-without-study", "required", ("status", "--storage", "sqlite:///{db}")),
    # --- studies
    Case("study-missing-front", "no study named 'nope'",
         ("front", "--storage", "sqlite:///{db}", "--study", "nope")),
    Case("study-missing-export", "no study named 'nope'",
         ("export", "--storage", "sqlite:///{db}", "--study", "nope", "-o", "{dir}/r.yaml")),
    Case("study-missing-status", "no study named 'nope'",
         ("status", "--storage", "sqlite:///{db}", "--study", "nope")),
    Case("study-for-another-task", "fingerprint", RUN),
    Case("study-not-slimsearch", "not created by slimsearch",
         ("status", "--storage", "sqlite:///{dir}/plain-optuna.db", "--study", "plain"),
         untouched="plain-optuna.db"),
    # --- models the pipeline cannot handle (Python API)
    Case("model-not-a-module", "teacher must be a torch.nn.Module", call=_bad_teacher),
    Case("model-labels-out-of-range", "outside [0, 1]", call=_labels_out_of_range),
    Case("model-int8-without-linear", "quant_bits=8", call=_int8_without_linear_layers),
    Case("model-task-not-a-task", "task must be an objectives.Task", call=_task_is_not_a_task),
]


@pytest.fixture(scope="module")
def inputs(searched, tmp_path_factory) -> tuple[Path, Path, str]:
    """(directory of bad files, the searched study's database, its study name)."""
    from search import Recipe, load_front

    url, name, _ = searched
    db = Path(url.removeprefix("sqlite:///"))
    d = tmp_path_factory.mktemp("bad-input")
    files = {
        "misspelt.yaml": "prune_ration: {low: 0.1, high: 0.5}\n",
        "wrong-type.yaml": "prune_ratio: {low: abc, high: 0.5}\n",
        "inverted.yaml": "prune_ratio: {low: 0.8, high: 0.2}\n",
        "truncated-space.yaml": "prune_ratio: {low: 0.1, hi",
        "budget-beside-uniform.yaml": "quant_bits: {choices: [32, 8]}\nbit_budget: 8.5\n",
        "evil-space.yaml": f"!!python/object/apply:os.system ['touch {d}/pwned-space']\n",
        "evil-recipe.yaml": f"!!python/object/apply:os.system ['touch {d}/pwned-recipe']\n",
        "empty.yaml": "",
    }
    for fname, text in files.items():
        (d / fname).write_text(text)
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81" * 64)
    (d / "garbage.db").write_bytes(b"this is not a database\n" * 100)
    shutil.copy(db, d / "read-only.db")
    (d / "read-only.db").chmod(0o444)
    optuna.create_study(study_name="plain", storage=f"sqlite:///{d}/plain-optuna.db")

    front, info = load_front(url, name)
    good = Recipe.from_front(front, info, prefer="size").model_dump(mode="json")
    text = yaml.safe_dump(good)
    (d / "truncated-recipe.yaml").write_text(text[: len(text) // 2])

    def variant(fname: str, edit: Callable[[dict], None]) -> None:
        data = yaml.safe_load(text)
        edit(data)
        (d / fname).write_text(yaml.safe_dump(data))

    variant("misspelt-recipe.yaml",
            lambda r: r["compression"].update(prune_ratoi=r["compression"].pop("prune_ratio")))
    variant("wrong-type-recipe.yaml", lambda r: r["compression"].update(quant_bits="eight"))
    variant("other-task.yaml", lambda r: r["task"].update(name="imagenet"))
    variant("other-model.yaml", lambda r: r["task"].update(fingerprint="0" * 16))
    return d, db, name


def _dump(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def test_the_table_has_at_least_30_cases():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, inputs, capsys, monkeypatch):
    d, db, study = inputs
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    before = _dump(db)
    watched = d / case.untouched if case.untouched else None
    watched_before = _digest(watched) if watched else None

    if case.call is not None:
        with pytest.raises(_user_errors()) as err:
            case.call(d)
        message = _one_line(err.value)
        assert message == str(err.value).strip(), "the message must be one line"
    else:
        argv = [a.format(db=db, study=study, dir=d) for a in case.argv]
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code
        captured = capsys.readouterr()
        assert code == 2, captured.err
        assert captured.out == ""
        message = captured.err.rstrip("\n")
        assert message.startswith("slimsearch"), message
        assert "\n" not in message and "Traceback" not in message, message
        assert message.count("error:") == 1, message
    assert case.needle in message, message
    if case.secret:
        assert case.secret not in message
    assert _dump(db) == before, "the study database changed"
    if watched is not None:
        assert _digest(watched) == watched_before, f"{case.untouched} changed"
    assert not (d / "pwned-space").exists() and not (d / "pwned-recipe").exists()
