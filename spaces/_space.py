"""``SearchSpace``: a validated, immutable description of what a study searches."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict

from spaces._catalog import CATALOG, PRESETS, ParamSpec
from spaces._errors import SpaceError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

# bool first: pydantic keeps True/False as bools, ints as ints (exact-type match).
Scalar = bool | int | float


class FloatRange(BaseModel):
    """Search a float in ``[low, high]``, uniformly or on a log scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float
    log: bool = False


class Choice(BaseModel):
    """Search one of a finite set of values."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    choices: tuple[Scalar, ...]


class Fixed(BaseModel):
    """Do not search: every trial uses ``value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: Scalar


Param = FloatRange | Choice | Fixed

ALLOCATION_BASES: tuple[int, ...] = (32, 16)
"""The ``quant_bits`` values a per-layer allocation (``bit_budget``) runs on: the base
precision the rest of the model stays in (objectives' ``BASES``, which refuses others)."""

ALLOCATION_PARAMS: tuple[str, ...] = ("bit_budget", "latency_budget", "latency_saving")
"""The parameters that shape a per-layer allocation. Beside uniform precisions (a
``quant_bits`` outside ``ALLOCATION_BASES``), they apply only to the trials whose
``quant_bits`` is a base (``SearchSpace.conditions``)."""

_FORMS = (
    "a mapping with low/high[/log] (a range), with choices (a list), with value (fixed), "
    "or a bare number (fixed)"
)


def _as_number(name: str, field: str, raw: object, spec: ParamSpec) -> Scalar:
    if spec.kind == "bool":
        if not isinstance(raw, bool):
            raise SpaceError(f"{name}.{field}: {raw!r} is not true/false")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise SpaceError(f"{name}.{field}: {raw!r} is not a number; allowed: {spec.allowed_text()}")
    if spec.kind == "int":
        if isinstance(raw, float) and not raw.is_integer():
            raise SpaceError(
                f"{name}.{field}: {raw!r} is not an integer; allowed: {spec.allowed_text()}"
            )
        return int(raw)
    return float(raw)


def _check(name: str, field: str, value: Scalar, spec: ParamSpec) -> None:
    why = spec.check_value(value)
    if why is not None:
        raise SpaceError(f"{name}.{field}: {why}")


def _parse_param(name: str, raw: object) -> Param:
    """Turn one user-written parameter entry into a validated ``Param``."""
    spec = CATALOG.get(name)
    if spec is None:
        raise SpaceError(
            f"unknown parameter {name!r}; known parameters: {', '.join(sorted(CATALOG))}"
        )
    if isinstance(raw, (FloatRange, Choice, Fixed)):
        raw = raw.model_dump()
    if not isinstance(raw, Mapping):
        raw = {"value": raw}
    keys = set(raw)
    if keys <= {"low", "high", "log"} and {"low", "high"} <= keys:
        if spec.kind != "float":
            example = (
                "[false, true]" if spec.kind == "bool"
                else str(list(spec.default_choices or spec.allowed or ()))
            )
            raise SpaceError(
                f"{name}: takes choices (e.g. {{choices: {example}}}), not a low/high range"
            )
        low = _as_number(name, "low", raw["low"], spec)
        high = _as_number(name, "high", raw["high"], spec)
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"{name}.log: {log!r} is not true/false")
        _check(name, "low", low, spec)
        _check(name, "high", high, spec)
        if not low < high:
            raise SpaceError(
                f"{name}: empty range low={low:g} >= high={high:g}; "
                f"need low < high, or write {{value: {low:g}}} to fix it"
            )
        if log and low <= 0:
            raise SpaceError(f"{name}: a log range needs low > 0, got low={low:g}")
        return FloatRange(low=low, high=high, log=log)
    if keys == {"choices"}:
        choices = raw["choices"]
        if not isinstance(choices, (list, tuple)) or len(choices) == 0:
            raise SpaceError(f"{name}.choices: need a non-empty list, got {choices!r}")
        parsed = tuple(_as_number(name, "choices", c, spec) for c in choices)
        for c in parsed:
            _check(name, "choices", c, spec)
        if len(set(parsed)) != len(parsed):
            raise SpaceError(f"{name}.choices: duplicate values in {list(parsed)}")
        return Choice(choices=parsed)
    if keys == {"value"}:
        value = _as_number(name, "value", raw["value"], spec)
        _check(name, "value", value, spec)
        return Fixed(value=value)
    raise SpaceError(f"{name}: unrecognised entry {dict(raw)!r}; write {_FORMS}")


class SearchSpace:
    """The parameters a study searches, each a range, a set of choices or a fixed value.

    A ``SearchSpace`` is validated when it is built and immutable afterwards: every
    name is one the trial understands, every range is non-empty and inside the legal
    bounds, every choice is supported. Parameters left out are not searched; the trial
    uses its built-in default for them.

    Example:
        >>> space = SearchSpace.default().narrow("prune_ratio", high=0.5).fix("quant_bits", 8)
        >>> SearchSpace.from_yaml(space.to_yaml()) == space
        True

    Raises:
        SpaceError: on construction, naming the bad field and what is allowed.
    """

    __slots__ = ("_params",)

    def __init__(self, parameters: Mapping[str, object]) -> None:
        if not isinstance(parameters, Mapping):
            raise SpaceError(
                f"a search space is a mapping of parameter name to entry, got "
                f"{type(parameters).__name__}"
            )
        if not parameters:
            raise SpaceError(
                f"empty search space; name at least one of: {', '.join(CATALOG)}"
            )
        parsed: dict[str, Param] = {}
        for name, raw in parameters.items():
            if not isinstance(name, str):
                raise SpaceError(f"parameter names must be strings, got {name!r}")
            parsed[name] = _parse_param(name, raw)
        _check_one_precision_rule(parsed)
        # Keep catalog order so YAML output and Optuna distributions are stable.
        order = list(CATALOG)
        self._params: dict[str, Param] = dict(
            sorted(parsed.items(), key=lambda kv: order.index(kv[0]))
        )

    # ----------------------------------------------------------------- construction
    @classmethod
    def default(cls) -> SearchSpace:
        """The default space: every catalog parameter over its default range."""
        params: dict[str, object] = {}
        for spec in CATALOG.values():
            if spec.default_range is not None:
                lo, hi = spec.default_range
                params[spec.name] = {"low": lo, "high": hi, "log": spec.default_log}
            elif spec.default_choices is not None:
                params[spec.name] = {"choices": list(spec.default_choices)}
        return cls(params)

    @classmethod
    def preset(cls, name: str) -> SearchSpace:
        """A named space for a kind of model: ``"default"`` or ``"transformer"``.

        ``"transformer"`` searches attention-head and FFN pruning ratios, vocabulary
        pruning (on/off), int8 embeddings, the quantization of Linear layers and the
        distillation fine-tune, with learning rates suited to pre-trained encoders.

        Raises:
            SpaceError: for an unknown preset name.
        """
        if name == "default":
            return cls.default()
        if name not in PRESETS:
            raise SpaceError(
                f"unknown preset {name!r}; presets: {', '.join(['default', *sorted(PRESETS)])}"
            )
        return cls(PRESETS[name])

    @classmethod
    def from_dict(cls, data: object) -> SearchSpace:
        """Build from the mapping form used in YAML files (see ``to_dict``)."""
        if not isinstance(data, Mapping):
            raise SpaceError(
                "a search space file must hold a mapping of parameter name to entry, "
                f"got {type(data).__name__}"
            )
        return cls(data)

    @classmethod
    def from_yaml(cls, text: str) -> SearchSpace:
        """Parse a YAML document (read with ``yaml.safe_load``)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpaceError(f"search space is not valid YAML: {_first_line(exc)}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """Read a search-space YAML file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpaceError(f"cannot read search space file {str(p)!r}: {exc}") from None
        try:
            return cls.from_yaml(text)
        except SpaceError as exc:
            raise SpaceError(f"{p}: {exc}") from None

    # --------------------------------------------------------------------- editing
    def narrow(
        self,
        name: str,
        *,
        low: float | None = None,
        high: float | None = None,
        choices: list[Scalar] | tuple[Scalar, ...] | None = None,
    ) -> SearchSpace:
        """Return a copy with ``name``'s range or choices replaced (validated again)."""
        current = self._get(name)
        raw: dict[str, Any]
        if choices is not None:
            raw = {"choices": list(choices)}
        elif isinstance(current, FloatRange):
            raw = {
                "low": current.low if low is None else low,
                "high": current.high if high is None else high,
                "log": current.log,
            }
        else:
            raise SpaceError(f"{name}: narrow a categorical parameter with choices=[...]")
        return self._replace(name, raw)

    def fix(self, name: str, value: Scalar) -> SearchSpace:
        """Return a copy where ``name`` is not searched but set to ``value``."""
        if name not in CATALOG:
            _parse_param(name, value)  # raises the unknown-name error
        return self._replace(name, {"value": value})

    def per_layer_precision(
        self,
        low: float = 5.5,
        high: float = 32.0,
        *,
        log: bool = True,
        latency: tuple[float, float] | None = None,
        saving: tuple[float, float] | None = None,
        bases: tuple[int, ...] = (32,),
        uniform: tuple[int, ...] = (),
    ) -> SearchSpace:
        """Return a copy that searches ``bit_budget`` over ``[low, high]`` effective bits
        per weight (log-scaled by default: a bit matters more near int4 than near fp32)
        instead of one precision for all layers: ``edge_bits`` dropped (per-layer
        allocation replaces it) and ``quant_bits`` the *base* the model runs in around
        the allocated layers — fixed at 32 by default; ``bases=(32, 16)`` searches it
        over fp32 and bf16 (on hardware with native bf16 a bf16 base is what makes a
        mostly-bf16 allocation as fast as uniform bf16). The default range ends at 32
        bits, every layer fp32, where the seeds put the fp32 structures a uniform search
        tries; a continuous range draws exactly 32 with probability zero, though. With
        ``high`` above 32 (up to 64), every budget from 32 up leaves the size unbound —
        every layer fp32, or with a latency parameter the least sensitive allocation in
        time — so the sampler draws fp32 on an fp32 base as it draws uniform bf16 on a
        bf16 base (any budget from 16 up): e.g. ``high=45.25`` gives it a sixth of the
        log range.

        With ``saving``, it also searches ``latency_saving`` over that range (within
        [0, 1]: how much of the time the allocation could save at that size it must
        save); with ``latency``, ``latency_budget`` instead (the allocated layers'
        measured time as a fraction of theirs at fp32). Not both.

        With ``uniform`` (8, 4 or both), ``quant_bits`` also offers those precisions for
        *every* layer beside the bases: a trial that draws one is uniform int8 (int4),
        as in a uniform search, and draws no ``bit_budget`` or latency parameter (they
        are conditional on a base: ``conditions``). The allocation rarely lands on these
        corners by itself — under a budget of int8's size the least sensitive mix puts
        some layers in int4 and others higher, which can be slower — and on small models
        all-int4 can lie below any budget the range starts from.

        Raises:
            SpaceError: both ``latency`` and ``saving``, a base other than 32 and 16, a
                uniform precision other than 8 and 4, or a range the catalog refuses.

        Example:
            >>> s = SearchSpace.default().per_layer_precision(6.0, 12.0)
            >>> s.parameters["quant_bits"].value, "edge_bits" in s
            (32, False)
        """
        if latency is not None and saving is not None:
            raise SpaceError("per_layer_precision: latency (latency_budget) and saving "
                             "(latency_saving) both bound the allocation's time; give one")
        params: dict[str, object] = {
            k: v for k, v in self._params.items()
            if k not in ("quant_bits", "edge_bits", *ALLOCATION_PARAMS)
        }
        if not bases or not set(bases) <= set(ALLOCATION_BASES):
            raise SpaceError(f"per_layer_precision: bases={bases!r}; allowed: 32, 16 "
                             "(fp32, bf16) or both")
        if not set(uniform) <= {8, 4}:
            raise SpaceError(f"per_layer_precision: uniform={uniform!r}; allowed: 8, 4 "
                             "(int8, int4 for every layer; fp32 and bf16 are the bases)")
        ordered = sorted(set(bases) | set(uniform), reverse=True)
        params["quant_bits"] = ({"value": ordered[0]} if len(ordered) == 1
                                else {"choices": ordered})
        params["bit_budget"] = {"low": low, "high": high, "log": log}
        if latency is not None:
            params["latency_budget"] = {"low": latency[0], "high": latency[1]}
        if saving is not None:
            params["latency_saving"] = {"low": saving[0], "high": saving[1]}
        return SearchSpace(params)

    def drop(self, name: str) -> SearchSpace:
        """Return a copy without ``name``: trials use the trial config's default."""
        self._get(name)
        params = {k: v for k, v in self._params.items() if k != name}
        return SearchSpace(params)

    # -------------------------------------------------------------------- queries
    @property
    def parameters(self) -> Mapping[str, Param]:
        """Read-only view of the parameters, in catalog order."""
        return dict(self._params)

    def searched(self) -> list[str]:
        """Names of the parameters that vary between trials."""
        return [k for k, v in self._params.items() if not isinstance(v, Fixed)]

    def fixed_values(self) -> dict[str, Scalar]:
        """Values of the fixed parameters."""
        return {k: v.value for k, v in self._params.items() if isinstance(v, Fixed)}

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of the searched parameters."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        out: dict[str, BaseDistribution] = {}
        for k, v in self._params.items():
            if isinstance(v, FloatRange):
                out[k] = FloatDistribution(v.low, v.high, log=v.log)
            elif isinstance(v, Choice):
                out[k] = CategoricalDistribution(list(v.choices))
        return out

    def allows(self, name: str, value: object) -> bool:
        """Whether parameter ``name`` of this space may take ``value``.

        A fixed parameter allows its value only, a choice its choices, a range any
        number within it; a name the space does not hold allows nothing.
        """
        p = self._params.get(name)
        if isinstance(p, Fixed):
            return value == p.value
        if isinstance(p, Choice):
            return value in p.choices
        if isinstance(p, FloatRange):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            return not math.isnan(float(value)) and p.low <= float(value) <= p.high
        return False

    def conditions(self) -> dict[str, tuple[str, tuple[Scalar, ...]]]:
        """Conditional parameters: ``{name: (parent, values)}`` — a trial draws ``name``
        only when its ``parent`` took one of ``values``.

        The one condition: beside uniform precisions (``quant_bits`` searched over a base
        and 8 or 4, see ``per_layer_precision(uniform=...)``), the allocation's
        parameters (``ALLOCATION_PARAMS``) apply to the trials on a base only; a uniform
        trial has none of them and runs with their default, 0 (off). Empty otherwise.
        """
        bits = self._params.get("quant_bits")
        values = _values(bits) if bits is not None else None
        if not isinstance(bits, Choice) or set(values or ()) <= set(ALLOCATION_BASES):
            return {}
        bases = tuple(v for v in bits.choices if v in ALLOCATION_BASES)
        return {name: ("quant_bits", bases) for name in ALLOCATION_PARAMS
                if name in self._params and not isinstance(self._params[name], Fixed)}

    def active(self, config: Mapping[str, object]) -> list[str]:
        """The parameters a trial with ``config``'s values uses: all of this space's,
        less the conditional ones (``conditions``) whose parent's value in ``config``
        does not enable them."""
        cond = self.conditions()
        return [k for k in self._params
                if k not in cond or config.get(cond[k][0]) in cond[k][1]]

    def contains(self, config: Mapping[str, object]) -> bool:
        """Whether ``config`` (searched + fixed values) is a point of this space: every
        parameter the point uses (``active``), each allowed, and nothing else."""
        if set(config) != set(self.active(config)):
            return False
        return all(self.allows(k, v) for k, v in config.items())

    # -------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The mapping form: ``{name: {low, high, log} | {choices} | {value}}``."""
        out: dict[str, dict[str, Any]] = {}
        for k, v in self._params.items():
            d = v.model_dump()
            if isinstance(v, Choice):
                d["choices"] = list(v.choices)
            out[k] = d
        return out

    def to_yaml(self) -> str:
        """YAML text that ``from_yaml`` reads back to an equal space."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write ``to_yaml()`` to ``path`` and return the path."""
        p = Path(path)
        p.write_text(self.to_yaml(), encoding="utf-8")
        return p

    # --------------------------------------------------------------------- dunder
    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self._params == other._params

    def __hash__(self) -> int:
        return hash(tuple(self._params.items()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_dict()!r})"

    # -------------------------------------------------------------------- private
    def _get(self, name: str) -> Param:
        if name not in self._params:
            raise SpaceError(
                f"parameter {name!r} is not in this space; it has: {', '.join(self._params)}"
            )
        return self._params[name]

    def _replace(self, name: str, raw: object) -> SearchSpace:
        params: dict[str, object] = dict(self._params)
        params[name] = raw
        return SearchSpace(params)


def _values(param: Param) -> tuple[Scalar, ...] | None:
    """The values a choice or fixed entry takes (None for a range)."""
    if isinstance(param, Choice):
        return param.choices
    if isinstance(param, Fixed):
        return (param.value,)
    return None


def _check_one_precision_rule(params: Mapping[str, Param]) -> None:
    """``bit_budget`` chooses each Linear layer's precision; ``quant_bits`` and
    ``edge_bits`` must then leave it alone (a trial may not get two precisions). A budget
    range starts above 0 (0 is "off", not a budget), so the pre-flight check, which
    probes a range's low end, judges the smallest budget a trial may really get."""
    budget = params.get("bit_budget")
    latency = params.get("latency_budget")
    if latency is not None and _values(latency) not in ((0.0,), (0,)) and (
        budget is None or _values(budget) in ((0.0,), (0,))
    ):
        raise SpaceError(
            "latency_budget shapes a per-layer allocation, which needs bit_budget > 0; "
            "search bit_budget too (SearchSpace.per_layer_precision(..., latency=...)) or "
            "drop latency_budget"
        )
    if isinstance(latency, FloatRange) and latency.low <= 0.0:
        raise SpaceError(
            f"latency_budget.low: {latency.low:g} is not a budget (0 means off); search it "
            "from a positive low, e.g. 0.5"
        )
    saving, off = params.get("latency_saving"), ((0.0,), (0,))
    if saving is not None and _values(saving) not in off:
        if budget is None or _values(budget) in off:
            raise SpaceError(
                "latency_saving shapes a per-layer allocation, which needs bit_budget > 0; "
                "search bit_budget too (SearchSpace.per_layer_precision(..., saving=...)) "
                "or drop latency_saving"
            )
        if latency is not None and _values(latency) not in off:
            raise SpaceError(
                "latency_saving and latency_budget both bound the allocation's time; "
                "search one of them (drop the other)"
            )
    if budget is None or _values(budget) == (0.0,) or _values(budget) == (0,):
        return
    if isinstance(budget, FloatRange) and budget.low <= 0.0:
        raise SpaceError(
            f"bit_budget.low: {budget.low:g} is not a budget (0 means off: one precision "
            "for all layers); search bit_budget from a positive low at or above the "
            "teacher's int4 bits (about 4.5 to 5.5, see SearchSpace.per_layer_precision), "
            "or fix bit_budget at 0 and search quant_bits"
        )
    if isinstance(budget, Choice) and 0 in budget.choices:
        raise SpaceError(
            "bit_budget.choices: 0 (off) cannot be mixed with budgets; search bit_budget "
            "over budgets only, or run a separate search with quant_bits"
        )
    bits = params.get("quant_bits")
    values = set(_values(bits) or ()) if bits is not None else {32}
    if not values & set(ALLOCATION_BASES):
        raise SpaceError(
            "bit_budget chooses the Linear layers' precision and quant_bits is then the "
            f"base the model runs in, 32 or 16 (got {sorted(values, reverse=True)}); fix "
            "quant_bits at 32, or search it over [32, 16] "
            "(SearchSpace.per_layer_precision(..., bases=(32, 16)))"
        )
    if not values <= set(ALLOCATION_BASES):
        # Uniform precisions beside the bases: the allocation's parameters become
        # conditional on a base, which only searched parameters can be.
        for name in ALLOCATION_PARAMS:
            p = params.get(name)
            if isinstance(p, Fixed) and p.value != 0:
                raise SpaceError(
                    f"{name}: fixed at {p.value:g}, but quant_bits "
                    f"{sorted(values - set(ALLOCATION_BASES), reverse=True)} gives every "
                    f"layer one precision, where {name} cannot apply; search {name} (it "
                    "is then drawn on the bases 32/16 only) or search quant_bits over "
                    "32 and 16 only"
                )
    edge = params.get("edge_bits")
    if edge is not None and _values(edge) != (0,):
        raise SpaceError(
            "bit_budget and edge_bits both choose the Linear layers' precision; fix "
            "edge_bits at 0 (or drop it) when searching bit_budget"
        )


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
