from __future__ import annotations

import pytest
import yaml

from search import Recipe, RecipeError, load_front


@pytest.fixture(scope="module")
def recipe(searched) -> Recipe:
    url, name, _ = searched
    front, info = load_front(url, name)
    return Recipe.from_front(front, info, prefer="size")


def test_round_trip(recipe, tmp_path):
    path = recipe.save(tmp_path / "r.yaml")
    assert Recipe.load(path) == recipe
    assert recipe.versions["torch"]
    assert recipe.source is not None


def test_apply_reproduces_the_searched_trial(recipe, digits_task, tmp_path):
    applied = Recipe.load(recipe.save(tmp_path / "r.yaml")).apply(digits_task, tmp_path / "out")
    assert applied.result.accuracy == pytest.approx(recipe.metrics.accuracy, abs=1e-9)
    assert applied.result.size_bytes == recipe.metrics.size_bytes
    assert (tmp_path / "out" / "model.safetensors").stat().st_size == recipe.metrics.size_bytes
    assert Recipe.load(tmp_path / "out" / "recipe.yaml") == recipe


def test_misspelt_key_is_rejected(recipe, tmp_path):
    data = recipe.model_dump(mode="json")
    data["compression"]["prune_ratoi"] = data["compression"].pop("prune_ratio")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match="unknown key 'compression.prune_ratoi'") as err:
        Recipe.load(path)
    assert "prune_ratio" in str(err.value)  # the allowed keys are listed


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d["compression"].update(quant_bits=3), "compression.quant_bits"),
        (lambda d: d["compression"].update(prune_ratio="half"), "compression.prune_ratio"),
        (lambda d: d.pop("task"), "missing key 'task'"),
        (lambda d: d.update(slimsearch_recipe=9), "slimsearch_recipe"),
        (lambda d: d.update(extra_field=1), "unknown key 'extra_field'"),
    ],
)
def test_invalid_recipes(recipe, tmp_path, mutate, needle):
    data = recipe.model_dump(mode="json")
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match=needle):
        Recipe.load(path)


def test_truncated_and_hostile_files(recipe, tmp_path):
    path = tmp_path / "trunc.yaml"
    text = recipe.to_yaml()
    path.write_text(text[: len(text) // 2] + "\n  - [unclosed")
    with pytest.raises(RecipeError):
        Recipe.load(path)
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.load(hostile)
    with pytest.raises(RecipeError, match="cannot read"):
        Recipe.load(tmp_path / "missing.yaml")


def test_recipe_for_another_task_is_refused(recipe):
    from objectives.tasks import digits

    with pytest.raises(RecipeError, match="fingerprint"):
        recipe.apply(digits(finetune_epochs=3))


def test_apply_on_other_hardware_says_so(recipe, digits_task, caplog):
    from objectives import describe_hardware

    assert recipe.hardware == describe_hardware("cpu", digits_task.threads)
    with caplog.at_level("WARNING", logger="search.results._recipe"):
        applied = recipe.apply(digits_task)
    assert applied.result.hardware == recipe.hardware
    assert not [r for r in caplog.records if "not comparable" in r.getMessage()]

    elsewhere = recipe.model_copy(update={"hardware": "Some Other CPU [avx512f], 64 cores"})
    with caplog.at_level("WARNING", logger="search.results._recipe"):
        elsewhere.apply(digits_task)
    notes = [r.getMessage() for r in caplog.records if "not comparable" in r.getMessage()]
    assert len(notes) == 1 and "Some Other CPU" in notes[0] and recipe.hardware in notes[0]


def test_a_retimed_latency_carries_the_retiming_hardware(searched_copy, capsys):
    """A study searched on one machine and re-timed on another (a later run there, see
    ``Search(retime_rounds=)``): the recipe's latency is the re-timed figure, so its
    hardware is the re-timing's; the front table's caption says the same."""
    import optuna

    from search.study import ATTR_RETIMED
    from search.view import print_front

    url, name = searched_copy
    study = optuna.load_study(study_name=name, storage=url)
    other = "Other CPU [sve], 64 cores, 1 thread"
    study.set_user_attr(ATTR_RETIMED, {**study.user_attrs[ATTR_RETIMED], "hardware": other})
    front, info = load_front(url, name)
    searched_on = info.baseline["hardware"]
    assert searched_on != other and front.baseline["retimed_hardware"] == other
    recipe = Recipe.from_front(front, info, prefer="size")
    assert recipe.metrics.latency_ms == front.get(recipe.source.trial).latency_alone_ms
    assert recipe.hardware == other
    print_front(front)
    out = " ".join(capsys.readouterr().out.split())
    assert f"latency measured on {other};" in out
    assert f"measured on {searched_on})" in out  # the in-search column's hardware
    assert "not comparable" not in out  # all shown figures come from one session


def test_recipe_records_its_device_and_apply_follows_it(recipe, digits_task, tmp_path, caplog):
    import torch

    assert recipe.device == "cpu"  # the searched study ran on the CPU
    gpu_recipe = recipe.model_copy(update={"device": "cuda",
                                           "hardware": "NVIDIA H200 (sm_90), 16 cores"})
    assert Recipe.load(gpu_recipe.save(tmp_path / "gpu.yaml")) == gpu_recipe
    with pytest.raises(RecipeError, match="device must be 'cpu' or 'cuda'"):
        recipe.apply(digits_task, device="tpu")
    if torch.cuda.is_available():
        return  # the fallback below is for machines without a GPU
    with pytest.raises(RecipeError, match="no CUDA GPU"):
        recipe.apply(digits_task, device="cuda")
    with caplog.at_level("WARNING", logger="search.results._recipe"):
        applied = gpu_recipe.apply(digits_task)
    notes = [r.getMessage() for r in caplog.records if "not comparable" in r.getMessage()]
    assert len(notes) == 1 and "searched on a GPU" in notes[0] and "H200" in notes[0]
    assert applied.result.latency is not None and applied.result.latency.device == "cpu"
