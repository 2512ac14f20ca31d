"""``Recipe``: a chosen configuration, exported as YAML, that re-applies the compression.

A recipe holds the task's identity, the full compression config, the training seed,
the metrics the search measured, the teacher's baseline and the library versions.
``Recipe.load(path).apply(task)`` re-runs prune → distil → quantize with that config
and seed — deterministic for the same task, thread count, device and library versions —
and re-measures. Re-measured validation accuracy equals the searched value on the same
machine and versions; across machines or torch builds it is expected within
``ACCURACY_TOLERANCE`` (1 point). Latency is re-measured and depends on the machine.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from objectives import (
    MODEL_FILE,
    CompressionConfig,
    Task,
    TrialResult,
    evaluate,
    load_compressed,
    save_pretrained_compressed,
)
from objectives.tasks import CausalLMTask, TextTask
from search._errors import RecipeError
from search.results._pareto import Candidate, ParetoFront, Prefer
from search.study import StudyInfo

logger = logging.getLogger(__name__)

ACCURACY_TOLERANCE = 0.01
RECIPE_FILE = "recipe.yaml"
_FROM_STUDY: Any = object()
_NOT_HOLDING = (
    "trial {trial} does not hold at max_accuracy_drop={drop:g} {where}; exporting it as asked"
)
_NOT_HOLDING_WHERE = {
    "validation": "on validation",
    "lower bound": "at the {confidence:g} % lower bound on validation",
    "confirmation rows": "on the confirmation rows",
}
_LIBRARIES = ("slimsearch", "torch", "optuna", "ray", "torch-pruning", "transformers")


class Metrics(BaseModel):
    """Measured metrics of a model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accuracy: float
    latency_ms: float = Field(ge=0)
    size_bytes: int = Field(ge=0)
    test_accuracy: float | None = None
    accuracy_delta_se: float | None = None
    """Standard error of the accuracy difference to the teacher, paired on the same
    validation rows (``objectives.measure._paired``); None when not recorded."""
    latency_ms_search: float | None = None
    """When ``latency_ms`` was re-timed alone (interleaved with the teacher) after the
    search: the figure measured during the search, beside other trials."""


class TaskRef(BaseModel):
    """Which task a recipe was made for."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    fingerprint: str
    spec: dict[str, Any] = Field(default_factory=dict)


class SourceRef(BaseModel):
    """Where a recipe came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    study: str
    trial: int


class Recipe(BaseModel):
    """A compression recipe (see the module docstring for the reproduction contract).

    Example:
        >>> recipe = Recipe.load("recipe.yaml")          # doctest: +SKIP
        >>> applied = recipe.apply(task, output_dir="compressed")  # doctest: +SKIP
        >>> applied.result.accuracy                      # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    slimsearch_recipe: Literal[1] = 1
    task: TaskRef
    compression: CompressionConfig
    seed: int = Field(ge=0)
    metrics: Metrics
    baseline: Metrics
    source: SourceRef | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    hardware: str | None = None
    """Where ``metrics.latency_ms`` was measured (``objectives.describe_hardware``)."""
    device: Literal["cpu", "cuda"] = "cpu"
    """The kind of device the trial ran (fine-tuned and was timed) on; ``apply`` re-runs
    on the same kind by default."""
    accuracy_confidence: float | None = None
    """The study's ``accuracy_confidence``: the margin shown beside an accuracy change is
    ``z(accuracy_confidence) · accuracy_delta_se`` (None: from a study without one)."""

    # ---------------------------------------------------------------- creation
    @classmethod
    def from_candidate(cls, candidate: Candidate, info: StudyInfo) -> Recipe:
        """The recipe that reproduces ``candidate`` of the study ``info`` describes."""
        return cls(
            task=TaskRef(
                name=info.task["name"],
                fingerprint=info.task["fingerprint"],
                spec=dict(info.task.get("spec", {})),
            ),
            compression=CompressionConfig(**candidate.compression),
            seed=info.seed,
            metrics=Metrics(
                accuracy=candidate.accuracy,
                latency_ms=candidate.shown_latency_ms,
                latency_ms_search=(candidate.latency_ms if candidate.latency_alone_ms
                                   is not None else None),
                size_bytes=candidate.size_bytes,
                test_accuracy=candidate.test_accuracy,
                accuracy_delta_se=candidate.attrs.get("accuracy_delta_se"),
            ),
            baseline=_baseline_metrics(
                info.baseline if candidate.latency_alone_ms is None
                else {**info.baseline, "latency_ms": candidate.attrs["teacher_ms_alone"],
                      "latency_ms_search": info.baseline["latency_ms"]}
            ),
            source=SourceRef(study=info.name, trial=candidate.trial),
            versions=library_versions(),
            hardware=_latency_hardware(candidate, info),
            device="cuda" if str(candidate.attrs.get("device", "cpu")).startswith("cuda")
            else "cpu",
            accuracy_confidence=info.accuracy_confidence,
        )

    @classmethod
    def from_front(
        cls,
        front: ParetoFront,
        info: StudyInfo,
        *,
        prefer: Prefer = "latency",
        trial: int | None = None,
        max_accuracy_drop: float | None = _FROM_STUDY,
    ) -> Recipe:
        """Pick a candidate and make its recipe.

        Args:
            prefer: Passed to ``front.best``.
            trial: Export this front trial instead of the best one. When it fails
                ``max_accuracy_drop`` (``front.exclusion``: the lower bound, or the
                confirmation rows) it is still exported, with one warning line saying
                which test it fails.
            max_accuracy_drop: Keep only points that hold at this drop
                (``front.best``); default the study's stored ``max_accuracy_drop``,
                None for no filter.

        Raises:
            NoCandidateError: no front point qualifies, or ``trial`` is not on the front.
        """
        drop = info.max_accuracy_drop if max_accuracy_drop is _FROM_STUDY else max_accuracy_drop
        if trial is None:
            return cls.from_candidate(front.best(prefer=prefer, max_accuracy_drop=drop), info)
        candidate = front.get(trial)
        why = None if drop is None else front.exclusion(candidate, drop)
        if why is not None:
            logger.warning(_NOT_HOLDING.format(
                trial=trial, drop=drop, where=_NOT_HOLDING_WHERE[why].format(
                    confidence=100 * (front.accuracy_confidence or 0.0))))
        return cls.from_candidate(candidate, info)

    # ------------------------------------------------------------------- files
    def to_yaml(self) -> str:
        """YAML text; ``Recipe.from_yaml`` reads it back to an equal recipe."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write the recipe to ``path`` and return the path."""
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(self.to_yaml(), encoding="utf-8")
        except OSError as exc:
            raise RecipeError(f"cannot write recipe {str(p)!r}: {exc.strerror or exc}") from None
        return p

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "recipe") -> Recipe:
        """Parse and validate recipe YAML (``yaml.safe_load``; unknown keys rejected)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise RecipeError(
                f"{source}: not valid YAML{where} (truncated or corrupted?); re-export it "
                "with `slimsearch export`"
            ) from None
        if not isinstance(data, dict):
            raise RecipeError(
                f"{source}: a recipe is a YAML mapping, got {type(data).__name__}; "
                "re-export it with `slimsearch export`"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecipeError(f"{source}: {_describe(exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a recipe file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise RecipeError(f"cannot read recipe {str(p)!r}: {reason}") from None
        return cls.from_yaml(text, source=str(p))

    # ----------------------------------------------------------------- applying
    def check_task(self, task: Task) -> None:
        """Raise ``RecipeError`` unless ``task`` is the one this recipe was made for."""
        if task.name != self.task.name or task.fingerprint != self.task.fingerprint:
            raise RecipeError(
                f"recipe was made for task {self.task.name!r} (fingerprint "
                f"{self.task.fingerprint}), not {task.name!r} (fingerprint {task.fingerprint}); "
                "apply it to the task it was searched on"
            )

    def _apply_device(self, device: str | None) -> str:
        """The device ``apply`` re-runs on (see ``apply``)."""
        import torch

        if device is not None:
            if device not in ("cpu", "cuda"):
                raise RecipeError(f"device must be 'cpu' or 'cuda', got {device!r}")
            if device == "cuda" and not torch.cuda.is_available():
                raise RecipeError("device='cuda' but this machine has no CUDA GPU; "
                                  "apply on 'cpu' (latency then not comparable)")
            return device
        if self.device == "cuda" and not torch.cuda.is_available():
            logger.warning(
                "the recipe was searched on a GPU (%s) but this machine has none: re-applying "
                "on the CPU, so its latency is not comparable with the recipe's",
                self.hardware or "cuda",
            )
            return "cpu"
        return self.device

    def apply(
        self, task: Task, output_dir: str | Path | None = None, *, device: str | None = None
    ) -> AppliedRecipe:
        """Re-apply the compression to ``task`` and re-measure.

        Args:
            task: The task the recipe was made for (checked by fingerprint).
            device: ``"cpu"`` or ``"cuda"`` to re-run (fine-tune and time) on. Default:
                the recipe's ``device`` — a recipe searched on a GPU re-runs on a GPU
                (bf16 autocast, CUDA-event timing, as its trial did); where this machine
                has none it re-runs on the CPU and says so once (its latency is then
                not comparable with the recipe's).
            output_dir: Where to write ``model.safetensors``, ``recipe.yaml`` and
                ``metrics.json``; default: a temporary directory that is removed, so
                only the returned model and metrics remain. For a Hugging Face text
                task (``TextTask``) the directory is a loadable model directory:
                ``config.json``, ``slimsearch.json``, the (remapped) tokenizer, and
                ``model.safetensors`` in that structure — load it with
                ``objectives.load_pretrained_compressed`` and ``AutoTokenizer``. For a
                causal LM task (``CausalLMTask``) whose weights stay floating point it
                is a plain directory ``AutoModelForCausalLM.from_pretrained`` loads.

        Raises:
            RecipeError: if the task is not the recipe's task, or ``device`` is not
                ``"cpu"``/``"cuda"``, or ``"cuda"`` is asked for without a GPU.
        """
        self.check_task(task)
        import tempfile

        run_on = self._apply_device(device)

        tmp = None
        if output_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="slimsearch-apply-")
            out = Path(tmp.name)
        else:
            out = Path(output_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            result = evaluate(task, self.compression, seed=self.seed, output_dir=out,
                              device=run_on)
            model = load_compressed(task, self.compression, out / MODEL_FILE)
            fell_back = self.device != run_on and device is None  # said once already
            if (self.hardware and result.hardware and result.hardware != self.hardware
                    and not fell_back):
                logger.warning(
                    "re-measured on %s; the recipe's latency %.3f ms was measured on %s "
                    "(latencies from different hardware are not comparable)",
                    result.hardware, self.metrics.latency_ms, self.hardware,
                )
            drift = abs(result.accuracy - self.metrics.accuracy)
            if drift > ACCURACY_TOLERANCE:
                logger.warning(
                    "re-applied accuracy %.4f differs from the searched %.4f by more than %.2f",
                    result.accuracy, self.metrics.accuracy, ACCURACY_TOLERANCE,
                )
            if output_dir is not None:
                if isinstance(task, (TextTask, CausalLMTask)):
                    # A Hugging Face model: write a directory that loads on its own
                    # (config, tokenizer, structure; see load_pretrained_compressed).
                    save_pretrained_compressed(
                        model,
                        out,
                        tokenizer_dir=task.tokenizer_dir,
                        quant_bits=self.compression.quant_bits,
                        embed_bits=self.compression.embed_bits,
                        edge_bits=self.compression.edge_bits,
                        layer_bits=result.layer_bits,
                    )
                self.save(out / RECIPE_FILE)
                (out / "metrics.json").write_text(
                    json.dumps(applied_metrics(result), indent=2), encoding="utf-8"
                )
        finally:
            if tmp is not None:
                tmp.cleanup()
        return AppliedRecipe(
            model=model,
            result=result,
            output_dir=None if output_dir is None else out,
        )


@dataclass(frozen=True)
class AppliedRecipe:
    """The outcome of ``Recipe.apply``: the compressed model and its fresh measurements."""

    model: Any
    result: TrialResult
    output_dir: Path | None

    def metrics(self) -> dict[str, Any]:
        """``applied_metrics`` of the re-applied model."""
        return applied_metrics(self.result)


def applied_metrics(result: TrialResult) -> dict[str, Any]:
    """The metrics ``slimsearch apply --json`` prints: ``accuracy``, ``test_accuracy``,
    ``latency_ms``, ``size_bytes``, ``hardware``, and the re-applied model's paired
    difference to the teacher on the validation rows, ``accuracy_delta`` and
    ``accuracy_delta_se`` (None for a metric other than ``objectives.accuracy``)."""
    return {
        "accuracy": result.accuracy,
        "test_accuracy": result.test_accuracy,
        "latency_ms": result.latency_ms,
        "size_bytes": result.size_bytes,
        "hardware": result.hardware,
        "accuracy_delta": result.accuracy_delta,
        "accuracy_delta_se": result.accuracy_delta_se,
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that determine a recipe's result."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _latency_hardware(candidate: Candidate, info: StudyInfo) -> str | None:
    """Where the latency a recipe carries was measured: the re-timing's hardware when
    it is the re-timed figure, else the trial's (the study's baseline's if unrecorded)."""
    if candidate.latency_alone_ms is not None and candidate.attrs.get("retimed_hardware"):
        return str(candidate.attrs["retimed_hardware"])
    return candidate.attrs.get("hardware") or info.baseline.get("hardware")


def _baseline_metrics(baseline: dict[str, Any] | Any) -> Metrics:
    return Metrics(
        accuracy=float(baseline["accuracy"]),
        latency_ms=float(baseline["latency_ms"]),
        size_bytes=int(baseline["size_bytes"]),
        test_accuracy=baseline.get("test_accuracy"),
        latency_ms_search=baseline.get("latency_ms_search"),
    )


def _describe(exc: ValidationError) -> str:
    """One line for the first validation error: where, what, and what is allowed."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "recipe"
    if err["type"] == "extra_forbidden":
        parent = err["loc"][:-1]
        allowed = _allowed_keys(parent)
        return f"unknown key {loc!r}; allowed keys here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"missing key {loc!r}; re-export the recipe with `slimsearch export`"
    msg = str(err["msg"])
    field = str(err["loc"][-1]) if err["loc"] else ""
    if field and msg.startswith(f"{field}: "):  # the config's own messages name the field
        msg = msg[len(field) + 2:]
    return f"{loc}: {msg} (got {err.get('input')!r})"


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    model: Any = Recipe
    for part in parent:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
        else:
            return []
    return list(model.model_fields)
