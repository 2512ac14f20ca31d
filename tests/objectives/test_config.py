"""``CompressionConfig`` takes its legal values from ``spaces.CATALOG``, bound for bound."""

from __future__ import annotations

import math
import typing

import pytest
import yaml
from pydantic import ValidationError

from objectives import CompressionConfig
from spaces import CATALOG, ParamSpec

SPECS = list(CATALOG.values())
_KIND = {"float": float, "int": int, "bool": bool}


def _legal(spec: ParamSpec) -> list[object]:
    """Boundary values and, for closed sets, every allowed value."""
    if spec.kind == "bool":
        return [False, True]
    if spec.allowed is not None:
        return list(spec.allowed)
    cast = _KIND[spec.kind]
    low = math.nextafter(spec.low, math.inf) if spec.low_open else spec.low
    if spec.kind == "int":
        low = math.ceil(low) if not spec.low_open else math.floor(spec.low) + 1
    return [cast(low), cast(spec.high)]


def _illegal(spec: ParamSpec) -> list[object]:
    """Values just outside the bounds, or outside the allowed set."""
    if spec.kind == "bool":
        return [2, "maybe", None]
    if spec.allowed is not None:
        inside = range(int(spec.low) - 1, int(spec.high) + 2)
        return [v for v in inside if v not in spec.allowed]
    if spec.kind == "int":
        below = int(spec.low) if spec.low_open else int(spec.low) - 1
        return [below, int(spec.high) + 1, float(spec.low) + 0.5]
    below = spec.low if spec.low_open else math.nextafter(spec.low, -math.inf)
    return [below, math.nextafter(spec.high, math.inf), math.nan, math.inf, "half"]


def test_every_field_has_a_catalog_entry_and_every_entry_a_field():
    # layer_bits is not searched: it spells out the allocation a bit_budget trial chose.
    fields = [f for f in CompressionConfig.model_fields if f != "layer_bits"]
    assert fields == list(CATALOG)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_field_type_is_the_catalog_kind_and_default_is_legal(spec):
    field = CompressionConfig.model_fields[spec.name]
    if spec.allowed is not None:
        assert typing.get_origin(field.annotation) is typing.Literal
        assert set(typing.get_args(field.annotation)) == set(spec.allowed)
    else:
        assert field.annotation is _KIND[spec.kind]
    assert spec.check_value(field.default) is None


# Settings a parameter needs beside it to mean anything (checked in the test below it).
COMPANIONS = {"latency_budget": {"bit_budget": 8.0}, "latency_saving": {"bit_budget": 8.0}}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_config_accepts_the_catalog_boundary_values(spec):
    for value in _legal(spec):
        assert spec.check_value(value) is None, value  # the catalog agrees they are legal
        config = CompressionConfig(**{**COMPANIONS.get(spec.name, {}), spec.name: value})
        assert getattr(config, spec.name) == value


def test_latency_budget_without_a_bit_budget_is_refused():
    with pytest.raises(ValidationError, match="latency_budget: 0.8 shapes a per-layer"):
        CompressionConfig(latency_budget=0.8)
    with pytest.raises(ValidationError, match="latency_saving: 0.5 shapes a per-layer"):
        CompressionConfig(latency_saving=0.5)
    with pytest.raises(ValidationError, match="set one of them to 0"):
        CompressionConfig(bit_budget=8.0, latency_budget=1.0, latency_saving=0.5)
    assert CompressionConfig(bit_budget=8.0, latency_saving=1.0).latency_saving == 1.0


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_config_rejects_values_just_outside_naming_field_and_allowed_values(spec):
    values = _illegal(spec)
    assert values
    for value in values:
        assert spec.check_value(value) is not None, value  # the catalog refuses them too
        with pytest.raises(ValidationError) as err:
            CompressionConfig(**{spec.name: value})
        (error,) = err.value.errors()
        assert error["loc"] == (spec.name,)
        assert error["msg"].startswith(f"{spec.name}: ")
        if spec.kind == "bool":
            assert "true/false" in error["msg"]
        else:
            assert f"allowed: {spec.allowed_text()}" in error["msg"]


def test_message_states_the_allowed_set():
    with pytest.raises(ValidationError, match="quant_bits: 3 is not supported; "
                       "allowed: one of 32, 16, 8, 4"):
        CompressionConfig(quant_bits=3)
    with pytest.raises(ValidationError, match=r"distill_temperature: 0.0 is out of range; "
                       r"allowed: a number > 0 and <= 100"):
        CompressionConfig(distill_temperature=0)


def test_parsing_is_unchanged_for_closed_sets_and_numbers():
    # Closed sets parse like a Literal: an integral float is taken, a string is not.
    assert CompressionConfig(quant_bits=8.0).quant_bits == 8
    with pytest.raises(ValidationError, match="quant_bits"):
        CompressionConfig(quant_bits="8")
    # Ranges parse like float/int fields, then are checked against the catalog.
    assert CompressionConfig(prune_ratio="0.5").prune_ratio == 0.5
    assert CompressionConfig(batch_size="32").batch_size == 32
    assert CompressionConfig(prune_vocab="true").prune_vocab is True


def test_unknown_keys_are_refused_and_the_config_is_frozen():
    with pytest.raises(ValidationError, match="extra"):
        CompressionConfig(prune_ratoi=0.5)
    with pytest.raises(ValidationError):
        CompressionConfig().prune_ratio = 0.5  # type: ignore[misc]


def test_json_and_yaml_round_trip():
    config = CompressionConfig(
        prune_ratio=0.3, quant_bits=4, edge_bits=8, distill_temperature=2.5,
        learning_rate=3e-4, attn_prune_ratio=0.5, prune_vocab=True, embed_bits=8,
    )
    data = config.model_dump(mode="json")
    assert CompressionConfig.model_validate(data) == config
    assert CompressionConfig.model_validate(yaml.safe_load(yaml.safe_dump(data))) == config
    assert CompressionConfig.model_validate_json(config.model_dump_json()) == config
