"""Per-layer precision by measured sensitivity: the budget is met exactly, fragile layers
keep their bits, the allocation is the optimum, trials and recipes carry it."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from objectives import (
    LAYER_BITS,
    CompressionConfig,
    LayerProfile,
    TaskError,
    allocate,
    check_setting,
    evaluate,
    fastest_allocation,
    load_compressed,
    measure_sensitivity,
    precisions,
    pruned_copy,
    task_profile,
)
from objectives.measure import describe_hardware
from objectives.operators._allocation import (
    budget_bounds,
    layer_costs,
    tag_origins,
)
from objectives.operators._layer_timing import (
    call_order,
    measure_layer_latency,
    measure_switch_costs,
    switches,
)
from objectives.operators._profile import student_layer_latency
from objectives.operators._quantize import quantize
from objectives.operators._quantized_state import plain_tensors
from spaces import SearchSpace, SpaceError


def _mlp(widths: tuple[int, ...] = (64, 96, 96, 96, 10), seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def _fragile(model: nn.Sequential, index: int) -> nn.Sequential:
    """Make layer ``index`` fragile: huge weights (one per int4 group of every row) set
    the quantization scales, so int8/int4 round the weights that matter to zero. The
    huge weights multiply inputs that are always 0 (the previous layer's matching units
    are switched off), so the float model computes what it did."""
    layer = model[index]
    dead = list(range(0, layer.in_features, 32))
    with torch.no_grad():
        if index > 0:
            previous = model[index - 2]
            previous.weight[dead] = 0.0
            previous.bias[dead] = 0.0
        layer.weight[:, dead] = 1000.0
    return model


def _inputs(rows: int = 128, width: int = 64) -> torch.Tensor:
    x = torch.randn(rows, width, generator=torch.Generator().manual_seed(1))
    x[:, ::32] = 0.0
    return x


def _stored_weight_bytes(model: nn.Module, names: list[str]) -> int:
    tensors = plain_tensors(model)
    return sum(t.numel() * t.element_size() for k, t in tensors.items()
               if any(k.startswith(f"{n}.weight") for n in names))


def test_fragile_layer_gets_the_most_bits_and_the_budget_holds_exactly():
    model = _fragile(_mlp(), 2)
    profile = measure_sensitivity(model, _inputs())
    names = ["0", "2", "4", "6"]
    assert set(profile.sensitivity) == set(names)
    # The fragile layer is the most sensitive at every lower precision, by far.
    for bits in (8, 4):
        others = max(profile.sensitivity[n][bits] for n in names if n != "2")
        assert profile.sensitivity["2"][bits] > 10 * others
    low, high = budget_bounds(model)
    assert 4.0 < low < 6.0 and high == pytest.approx(32.0)
    for budget in (low, 7.0, 9.0, 10.0, 14.0, 20.0):
        alloc = allocate(tag_origins(copy.deepcopy(model)), profile, budget)
        assert set(alloc.layer_bits) == set(names)
        # The budget holds in the bytes the model file stores for these weights.
        q = quantize(copy.deepcopy(model), 32, layer_bits=alloc.layer_bits)
        stored = _stored_weight_bytes(q, names)
        assert stored == alloc.weight_bytes
        assert 8 * stored <= budget * alloc.weights
        # Whenever the budget has room for the fragile layer in floating point (bf16
        # keeps its large weights' relative precision: its KL at bf16 is ~0), it is never
        # stored int8 or int4.
        costs = layer_costs(model, names)
        room = costs["2"][16] + sum(min(costs[n].values()) for n in names if n != "2")
        if 8 * room <= budget * alloc.weights:
            assert alloc.layer_bits["2"] >= 16, (budget, alloc.layer_bits)
        else:
            assert budget < 10.0
    # With room for one floating-point layer (96×96 at 16 bits, the rest int4: 9.8
    # bits), it is the fragile one.
    alloc = allocate(tag_origins(copy.deepcopy(model)), profile, 10.0)
    assert alloc.layer_bits["2"] == 16 and alloc.effective_bits <= 10.0


def test_allocation_is_the_optimum_of_the_knapsack():
    model = _fragile(_mlp((64, 48, 80, 32, 10), seed=3), 4)
    profile = measure_sensitivity(model, _inputs())
    names = sorted(profile.sensitivity)
    costs = layer_costs(model, names)
    weights = sum(profile.weights.values())
    for budget in (6.0, 8.0, 9.5, 13.0, 25.0):
        capacity = math.floor(budget * weights / 8)
        best = min(
            sum(profile.sensitivity[n][b] for n, b in zip(names, combo, strict=True))
            for combo in itertools.product(LAYER_BITS, repeat=len(names))
            if sum(costs[n][b] for n, b in zip(names, combo, strict=True)) <= capacity
        )
        alloc = allocate(tag_origins(copy.deepcopy(model)), profile, budget)
        assert alloc.sensitivity == pytest.approx(best, rel=1e-6, abs=1e-12)
        assert alloc.weight_bytes <= capacity


def test_an_allocation_out_of_time_without_a_solution_fails_the_trial():
    from objectives.operators._allocation import _solve

    gen = torch.Generator().manual_seed(0)
    names = [f"l{i}" for i in range(100)]
    costs = {n: {32: 400, 8: 100, 4: int(torch.randint(40, 60, (1,), generator=gen))}
             for n in names}
    sens = {n: {32: 0.0, 8: float(torch.rand(1, generator=gen)), 4: 1.0 + float(
        torch.rand(1, generator=gen))} for n in names}
    capacity = 100 * 120
    assert set(_solve(names, costs, sens, capacity).values()) <= set(LAYER_BITS)
    with pytest.raises(TaskError, match=r"^the bit allocation of 100 layers found no solution"):
        _solve(names, costs, sens, capacity, time_limit=1e-9)


def test_refusals_name_the_problem():
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with pytest.raises(TaskError, match="bit_budget.*convolution"):
        measure_sensitivity(cnn, torch.randn(4, 1, 8, 8))
    model = _mlp()
    profile = measure_sensitivity(model, _inputs())
    with pytest.raises(TaskError, match="bit_budget=4.5 is below"):
        allocate(tag_origins(copy.deepcopy(model)), profile, 4.5)
    with pytest.raises(TaskError, match="no measured sensitivity"):
        allocate(tag_origins(_mlp((64, 32, 10))), LayerProfile(
            weights={"x": 1}, sensitivity={"x": {32: 0.0, 8: 1.0, 4: 2.0}}, rows=1), 8.0)
    with pytest.raises(ValidationError, match="runs on a base of quant_bits 32 or 16; got "
                                              "quant_bits=8"):
        CompressionConfig(bit_budget=8.0, quant_bits=8)
    with pytest.raises(ValidationError, match="layer_bits"):
        CompressionConfig(bit_budget=8.0, layer_bits={"net.0": 3})
    # A fixed budget beside uniform int8 (the default quant_bits offers 8): int8 trials
    # could not use it.
    with pytest.raises(SpaceError, match=r"bit_budget: fixed at 8, but quant_bits \[8\]"):
        SearchSpace.default().fix("bit_budget", 8.0)
    with pytest.raises(TaskError, match="precision 2"):
        quantize(_mlp(), 32, layer_bits={"0": 2})
    with pytest.raises(TaskError, match="missing"):
        quantize(_mlp(), 32, layer_bits={"0": 8})


def test_profile_round_trips_and_is_cached_per_task(digits_task, tmp_path):
    first = task_profile(digits_task, cache=tmp_path)
    assert LayerProfile.from_dict(first.to_dict()) == first
    assert sorted(first.sensitivity) == ["net.0", "net.2", "net.4"]
    assert all(s[32] == 0.0 and s[4] > s[8] > 0.0 for s in first.sensitivity.values())
    # The per-layer timing table, measured on this machine with the sensitivity.
    assert sorted(first.latency_ms) == sorted(first.sensitivity)
    assert all(set(t) == set(LAYER_BITS) and min(t.values()) > 0
               for t in first.latency_ms.values())
    assert first.hardware.startswith(describe_hardware("cpu", 1).split(",")[0])
    files = list((tmp_path / "sensitivity").glob("*.json"))
    assert len(files) == 1
    assert task_profile(digits_task, cache=tmp_path) is first  # this process: no remeasure
    with pytest.raises(TaskError, match="not a layer sensitivity profile"):
        LayerProfile.from_dict({"version": 1})
    # A profile stored on a study before the timing table existed still reads.
    old = {k: v for k, v in first.to_dict().items() if k not in ("latency_ms", "hardware")}
    assert LayerProfile.from_dict({**old, "version": 2}).latency_ms == {}
    # The layers in the order the model calls them; three layers are too few to time a
    # change of precision apart from the noise, so none is charged.
    assert first.order == ["net.0", "net.2", "net.4"] and first.switch_ms == {}


def _brute_force(model, profile, budget, time_cap=None):
    """The least summed sensitivity (and the least time) of every allocation within the
    size budget (and ``time_cap``), by enumeration (vectorised over the combinations)."""
    import numpy as np

    names = sorted(profile.sensitivity)
    costs = layer_costs(model, names)
    capacity = math.floor(budget * sum(profile.weights.values()) / 8)
    combos = np.array(list(itertools.product(range(len(LAYER_BITS)), repeat=len(names))))

    def total(table):
        values = np.array([[table[n][b] for b in LAYER_BITS] for n in names])
        return values[np.arange(len(names)), combos].sum(axis=1)

    fits = total(costs) <= capacity
    t, s = total(profile.latency_ms), total(profile.sensitivity)
    best_t = float(t[fits].min()) if fits.any() else math.inf
    if time_cap is not None:
        fits &= t <= time_cap * (1 + 1e-9)
    return (float(s[fits].min()) if fits.any() else math.inf), best_t


def _timed(measured, bf16, int8, int4):
    """``measured`` with a timing table where each layer costs in proportion to its
    weights at fp32, ``bf16``, ``int8`` and ``int4`` times that at those precisions."""
    table = {n: {32: w / 1000, 16: bf16 * w / 1000, 8: int8 * w / 1000, 4: int4 * w / 1000}
             for n, w in measured.weights.items()}
    profile = LayerProfile(weights=measured.weights, sensitivity=measured.sensitivity,
                           rows=measured.rows, latency_ms=table)
    return profile, sum(t[32] for t in table.values())


def test_latency_budget_trades_sensitivity_for_measured_time():
    model = _fragile(_mlp((64, 48, 80, 32, 10), seed=3), 4)
    measured = measure_sensitivity(model, _inputs())
    # A timing table where bf16 takes 0.7x a layer's time, int8 halves it and int4
    # triples it (as on a CPU without int4 kernels), layers costing in proportion to
    # their weights.
    profile, fp32_time = _timed(measured, 0.7, 0.5, 3)
    for budget in (6.0, 8.0, 9.5, 13.0):
        free = allocate(tag_origins(copy.deepcopy(model)), profile, budget)
        assert free.sensitivity == pytest.approx(_brute_force(model, profile, budget)[0],
                                                 rel=1e-6, abs=1e-12)
        for latency_budget in (1.0, 0.7):
            alloc = allocate(tag_origins(copy.deepcopy(model)), profile, budget,
                             latency_budget)
            best_s, fastest = _brute_force(model, profile, budget,
                                           latency_budget * fp32_time)
            if math.isfinite(best_s):  # reachable: the least sensitive within both budgets
                assert alloc.time_share <= latency_budget + 1e-9
                assert alloc.sensitivity == pytest.approx(best_s, rel=1e-6, abs=1e-12)
            else:  # not reachable at this size: the fastest allocation of this size
                assert alloc.time_share == pytest.approx(fastest / fp32_time)
            assert alloc.sensitivity >= free.sensitivity - 1e-12
    # At 6 bits the size budget needs int4 somewhere; 0.7x fp32's time is then not
    # reachable here, and the allocation is the fastest of that size, not a failure.
    tight = allocate(tag_origins(copy.deepcopy(model)), profile, 6.0, 0.5)
    assert tight.time_share > 0.5 and 4 in tight.layer_bits.values()
    with pytest.raises(TaskError, match="latency_budget needs the per-layer timing table"):
        allocate(tag_origins(copy.deepcopy(model)), measured, 8.0, 1.0)


def test_latency_saving_moves_between_the_least_sensitive_and_the_fastest_allocation():
    model = _fragile(_mlp((64, 48, 80, 32, 96, 40, 64, 10), seed=3), 4)
    measured = measure_sensitivity(model, _inputs())
    # As on a CPU where every quantized layer is slower than fp32 (bf16 emulated without
    # native units, dynamic int8 pays its activation quantization, int4 has no kernel):
    # bf16 3x, int8 2x, int4 6x fp32's time.
    profile, fp32_time = _timed(measured, 3, 2, 6)
    for budget in (6.0, 8.0, 10.0, 13.0):
        least = allocate(tag_origins(copy.deepcopy(model)), profile, budget)
        fastest = _brute_force(model, profile, budget)[1] / fp32_time
        assert least.time_share >= fastest - 1e-12
        # Every share of fp32's time below 1 is out of reach here: a latency_budget in
        # [0.5, 1) always gives the fastest allocation, whatever its value.
        for share in (0.5, 0.9):
            alloc = allocate(tag_origins(copy.deepcopy(model)), profile, budget, share)
            assert alloc.time_share == pytest.approx(fastest)
        previous = None
        for saving in (0.0, 0.5, 1.0):
            alloc = allocate(tag_origins(copy.deepcopy(model)), profile, budget,
                             latency_saving=saving)
            cap = least.time_share - saving * (least.time_share - fastest)
            assert alloc.time_share <= cap + 1e-9
            best_s, _ = _brute_force(model, profile, budget, cap * fp32_time)
            assert alloc.sensitivity == pytest.approx(best_s, rel=1e-6, abs=1e-12)
            assert 8.0 * alloc.weight_bytes <= budget * alloc.weights
            if previous is not None:  # more saving: never slower, never less sensitive
                assert alloc.time_share <= previous.time_share + 1e-12
                assert alloc.sensitivity >= previous.sensitivity - 1e-12
            previous = alloc
        assert previous.time_share == pytest.approx(fastest)
    # Half the saving at 8 bits is a point of its own, between the two ends.
    ends = [allocate(tag_origins(copy.deepcopy(model)), profile, 8.0, latency_saving=v)
            for v in (0.0, 0.5, 1.0)]
    assert ends[0].time_share > ends[1].time_share > ends[2].time_share
    with pytest.raises(TaskError, match="latency_saving=1.5 is not a share; allowed: 0 to 1"):
        allocate(tag_origins(copy.deepcopy(model)), profile, 8.0, latency_saving=1.5)
    with pytest.raises(TaskError, match="set one of them to 0"):
        allocate(tag_origins(copy.deepcopy(model)), profile, 8.0, 1.0, 0.5)
    with pytest.raises(TaskError, match="latency_saving needs the per-layer timing table"):
        allocate(tag_origins(copy.deepcopy(model)), measured, 8.0, latency_saving=0.5)


def test_changes_of_precision_between_neighbours_are_charged_their_measured_time():
    model = _fragile(_mlp((64, 48, 80, 32, 96, 40, 64, 10), seed=3), 4)
    measured = measure_sensitivity(model, _inputs())
    names = sorted(measured.sensitivity)
    # Execution order as measured (here not the names' order: "10" and "12" sort before
    # "2"). By the table, int8 is faster than fp32 on every other layer and slower on the
    # rest; a change between fp32 and int8 costs more than a layer takes.
    order = ["0", "2", "4", "6", "8", "10", "12"]
    table = {n: {32: 3.0, 16: 9.0, 8: 2.0 if i % 2 == 0 else 3.5, 4: 18.0}
             for i, n in enumerate(order)}
    base = LayerProfile(weights=measured.weights, sensitivity=measured.sensitivity,
                        rows=measured.rows, latency_ms=table)
    fp32_time = 3.0 * len(order)
    switch_ms = {(32, 8): 4.0, (32, 16): 1.0, (16, 8): 1.0, (32, 4): 0.5, (16, 4): 0.5,
                 (8, 4): 0.5}
    profile = dataclasses.replace(base, order=order, switch_ms=switch_ms)
    assert LayerProfile.from_dict(profile.to_dict()) == profile
    # Version 6 (before switch costs) reads with none, and charges none.
    v6 = {k: v for k, v in profile.to_dict().items() if k not in ("order", "switch_ms")}
    assert LayerProfile.from_dict({**v6, "version": 6}).switch_ms == {}
    costs = layer_costs(model, names)
    capacity_of = {b: math.floor(b * sum(measured.weights.values()) / 8)
                   for b in (8.0, 10.0, 13.0, 20.0)}
    combos = list(itertools.product(LAYER_BITS, repeat=len(names)))

    def time_of(bits):
        own = sum(profile.latency_ms[n][bits[n]] for n in names)
        return own + sum(switch_ms.get((max(bits[a], bits[b]), min(bits[a], bits[b])), 0.0)
                         for a, b in itertools.pairwise(order) if bits[a] != bits[b])

    for budget, capacity in capacity_of.items():
        fits = [dict(zip(names, c, strict=True)) for c in combos
                if sum(costs[n][b] for n, b in zip(names, c, strict=True)) <= capacity]
        fastest = min(time_of(b) for b in fits)
        least = allocate(tag_origins(copy.deepcopy(model)), profile, budget)
        for saving in (0.5, 1.0):
            alloc = allocate(tag_origins(copy.deepcopy(model)), profile, budget,
                             latency_saving=saving)
            # The recorded share counts the changes the allocation makes.
            assert alloc.time_share == pytest.approx(time_of(alloc.layer_bits) / fp32_time)
            cap = least.time_share - saving * (least.time_share - fastest / fp32_time)
            best = min(sum(profile.sensitivity[n][b[n]] for n in names) for b in fits
                       if time_of(b) <= cap * fp32_time * (1 + 1e-9))
            assert alloc.sensitivity == pytest.approx(best, rel=1e-6, abs=1e-12)
            if saving == 1.0:
                assert time_of(alloc.layer_bits) == pytest.approx(fastest)
        # Blind to the changes, the fastest allocation of this size alternates fp32 and
        # int8 wherever the size allows; charged, it makes fewer changes and runs faster
        # by the measured costs.
        blind = allocate(tag_origins(copy.deepcopy(model)), base, budget, latency_saving=1.0)
        charged = allocate(tag_origins(copy.deepcopy(model)), profile, budget,
                           latency_saving=1.0)
        assert time_of(charged.layer_bits) <= time_of(blind.layer_bits) + 1e-9
        assert switches(order, charged.layer_bits) <= switches(order, blind.layer_bits)
    # At any size, the fastest of all 4^7 allocations (changes charged), and among the
    # equally fast the least sensitive; its effective bits are the bytes it stores.
    every = [dict(zip(names, c, strict=True)) for c in combos]
    quickest = min(time_of(b) for b in every)
    fast = fastest_allocation(tag_origins(copy.deepcopy(model)), profile)
    assert time_of(fast.layer_bits) == pytest.approx(quickest)
    assert fast.sensitivity == pytest.approx(
        min(sum(profile.sensitivity[n][b[n]] for n in names) for b in every
            if time_of(b) <= quickest * (1 + 1e-9)), rel=1e-6, abs=1e-12)
    assert fast.effective_bits == pytest.approx(
        8.0 * sum(costs[n][fast.layer_bits[n]] for n in names) / sum(measured.weights.values()))
    # With room for every odd layer at fp32 (20 bits), blind alternates (6 changes, 41
    # ms counted) where charged stores every layer int8 (18.5 ms).
    blind = allocate(tag_origins(copy.deepcopy(model)), base, 20.0, latency_saving=1.0)
    charged = allocate(tag_origins(copy.deepcopy(model)), profile, 20.0, latency_saving=1.0)
    assert switches(order, blind.layer_bits) == 6
    assert set(charged.layer_bits.values()) == {8}
    assert charged.time_share == pytest.approx(18.5 / fp32_time)


class _Branches(nn.Module):
    """Layers registered in another order than the one they run in."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(32, 8)
        self.body = nn.Sequential(*[nn.Linear(32, 32) for _ in range(8)])
        self.early = nn.Linear(16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(self.body(self.early(x)))


def test_switch_costs_are_measured_per_pair_of_precisions_in_execution_order():
    model = _Branches().eval()
    x = torch.randn(16, 16)
    order = call_order(model, ["late", *(f"body.{i}" for i in range(8)), "early"], x)
    assert order == ["early", *(f"body.{i}" for i in range(8)), "late"]
    table = measure_layer_latency(model, x)
    got_order, costs = measure_switch_costs(model, x, table, repeats=5)
    assert got_order == order
    assert set(costs) == {(32, 16), (32, 8), (32, 4), (16, 8), (16, 4), (8, 4)}
    assert all(math.isfinite(v) and v >= 0.0 for v in costs.values())
    # On a bf16 base the pairs are the base's own options.
    table16 = measure_layer_latency(model, x, base=16)
    assert set(measure_switch_costs(model, x, table16, base=16, repeats=3)[1]) == {
        (16, 8), (16, 4), (8, 4)}
    # Too few layers to time a change apart from the noise: none measured.
    small = _mlp((16, 32, 8))
    assert measure_switch_costs(small, x, measure_layer_latency(small, x))[1] == {}


def test_a_budget_from_32_bits_up_leaves_the_size_unbound():
    model = _fragile(_mlp((64, 48, 80, 32, 10), seed=3), 4)
    measured = measure_sensitivity(model, _inputs())
    for budget in (32.0, 45.25, 64.0):  # every layer fp32: nothing is less sensitive
        alloc = allocate(tag_origins(copy.deepcopy(model)), measured, budget)
        assert set(alloc.layer_bits.values()) == {32} and alloc.effective_bits == 32.0
    # With a timing table where bf16 is faster than fp32, the fastest allocation at an
    # unbound size is all bf16, and a saving moves there from all fp32.
    profile, _ = _timed(measured, 0.5, 2, 6)
    fastest = allocate(tag_origins(copy.deepcopy(model)), profile, 45.25, latency_saving=1.0)
    assert set(fastest.layer_bits.values()) == {16}
    least = allocate(tag_origins(copy.deepcopy(model)), profile, 45.25, latency_saving=0.0)
    assert set(least.layer_bits.values()) == {32}
    space = SearchSpace.default().per_layer_precision(5.5, 45.25)
    assert space.parameters["bit_budget"].high == 45.25
    with pytest.raises(SpaceError, match="bit_budget"):
        SearchSpace.default().per_layer_precision(5.5, 65.0)


def test_where_int8_is_every_layers_fastest_the_fastest_allocation_of_its_size_is_uniform_int8():
    # What a uniform int8 seed becomes in a per-layer space with latency_saving (8.5 bits
    # at saving 1): with bf16 and int4 slower than fp32 and int8 faster, the fastest
    # allocation of int8's size is every layer int8, where the least sensitive one of
    # that size spends the bits elsewhere.
    model = _fragile(_mlp((64, 48, 80, 32, 10), seed=3), 4)
    measured = measure_sensitivity(model, _inputs())
    profile, _ = _timed(measured, 5.0, 0.8, 6.0)
    fastest = allocate(tag_origins(copy.deepcopy(model)), profile, 8.5, latency_saving=1.0)
    assert set(fastest.layer_bits.values()) == {8} and fastest.time_share == pytest.approx(0.8)
    least = allocate(tag_origins(copy.deepcopy(model)), profile, 8.5, latency_saving=0.0)
    assert set(least.layer_bits.values()) != {8} and least.sensitivity < fastest.sensitivity


def test_layer_timing_table_times_each_layer_inside_the_model():
    model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 4)).eval()
    before = copy.deepcopy(model.state_dict())
    table = measure_layer_latency(model, torch.randn(64, 256))
    assert sorted(table) == ["0", "2"] and all(set(t) == set(LAYER_BITS) for t in table.values())
    # 256x1024 on 64 rows is 64x the multiply-adds of 1024x4: it reads far slower.
    assert table["0"][32] > 3 * table["2"][32], table
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_decode_timing_records_the_one_token_steps_only():
    from objectives.operators._layer_timing import _recorder

    layer = nn.Sequential(nn.Linear(8, 8))
    for decode, calls in ((True, 1), (False, 2)):
        times, hooks = _recorder(layer, ["0"], decode)
        layer(torch.randn(2, 5, 8))  # a prompt's prefill: five positions
        layer(torch.randn(2, 1, 8))  # one generated token
        for h in hooks:
            h.remove()
        assert len(times["0"]) == calls


def test_a_decoder_is_timed_in_its_decode_steps(tiny_llama_dir):
    from objectives.operators._allocation import allocated
    from tests.objectives.tiny_decoder import tiny_decoder_task

    task = tiny_decoder_task(tiny_llama_dir)
    table = measure_layer_latency(task.teacher, task.decode_prompt, decode_tokens=4, rounds=2)
    # Every allocated layer, the tied head too, timed at every precision as a trial
    # builds it.
    assert sorted(table) == sorted(allocated(task.teacher))
    assert all(set(t) == set(LAYER_BITS) and min(t.values()) > 0 for t in table.values())


def test_a_timing_table_passed_for_the_pruned_model_replaces_the_scaled_one():
    model = _fragile(_mlp((64, 48, 80, 32, 10), seed=3), 4)
    measured = measure_sensitivity(model, _inputs())
    # The teacher's table: int8 halves every layer's time. The pruned model's own
    # table says otherwise (per-call overhead on small layers): fp32 is the fastest,
    # then bf16, int8, int4. With the size unbound (32 bits) the fastest allocation is
    # all int8 by the first and all fp32 by the second.
    profile, _ = _timed(measured, 0.7, 0.5, 3)
    student = tag_origins(copy.deepcopy(model))
    own = {n: {32: 1.0, 16: 2.0, 8: 3.0, 4: 4.0} for n in profile.sensitivity}
    scaled = allocate(student, profile, 32.0, latency_saving=1.0)
    assert set(scaled.layer_bits.values()) == {8}
    assert scaled.time_share == pytest.approx(0.5)
    timed = allocate(student, profile, 32.0, latency_saving=1.0, latency_ms=own)
    assert set(timed.layer_bits.values()) == {32} and timed.time_share == pytest.approx(1.0)
    # Under a size budget, the time share is the chosen layers' time in the table
    # passed, over its fp32 time.
    tight = allocate(student, profile, 13.0, latency_saving=1.0, latency_ms=own)
    t = sum(own[n][b] for n, b in tight.layer_bits.items())
    assert tight.time_share == pytest.approx(t / sum(v[32] for v in own.values()))
    with pytest.raises(TaskError, match="layer '0' has no time in the timing table"):
        allocate(student, profile, 13.0, latency_saving=1.0,
                 latency_ms={n: v for n, v in own.items() if n != "0"})


def test_a_pruned_student_is_timed_in_itself_once_per_machine(digits_task, tmp_path):
    from objectives.operators import _layer_timing

    profile = task_profile(digits_task)
    unpruned = pruned_copy(digits_task, CompressionConfig())
    # Every layer at its teacher shape: the profile's table is the student's.
    assert student_layer_latency(unpruned, digits_task, profile, cache=tmp_path) is None
    student = pruned_copy(digits_task, CompressionConfig(prune_ratio=0.75))
    table = student_layer_latency(student, digits_task, profile, cache=tmp_path)
    assert table is not None and sorted(table) == sorted(profile.latency_ms)
    assert all(set(t) == set(LAYER_BITS) and min(t.values()) > 0 for t in table.values())
    # Each student structure timed once, on disk: a new process (the in-memory copy
    # dropped) reads exactly the same figures back, which timing again would not give.
    files = sorted((tmp_path / "layer_times").glob("*.json"))
    assert len(files) == 1
    _layer_timing._TABLES.clear()
    assert student_layer_latency(student, digits_task, profile, cache=tmp_path) == table
    # A damaged entry is timed again, not trusted.
    files[0].write_text("{not json", encoding="utf-8")
    _layer_timing._TABLES.clear()
    again = student_layer_latency(student, digits_task, profile, cache=tmp_path)
    assert sorted(again) == sorted(table) and all(
        set(t) == set(LAYER_BITS) for t in again.values())
    assert len(files[0].read_text(encoding="utf-8")) > 10
    # Another structure is another table.
    other = pruned_copy(digits_task, CompressionConfig(prune_ratio=0.5))
    assert student_layer_latency(other, digits_task, profile, cache=tmp_path) != table
    assert len(list((tmp_path / "layer_times").glob("*.json"))) == 2
    # A profile stored before in-model timing (version 5, each layer timed alone): even
    # an unpruned student is timed in the model, so every trial allocates by in-model
    # times.
    older = LayerProfile.from_dict({**profile.to_dict(), "version": 5})
    assert older.version == 5
    assert student_layer_latency(unpruned, digits_task, older, cache=tmp_path) is not None
    # A profile without a timing table has nothing to replace.
    bare = LayerProfile(weights=profile.weights, sensitivity=profile.sensitivity,
                        rows=profile.rows)
    assert student_layer_latency(student, digits_task, bare, cache=tmp_path) is None


def test_a_pruned_trial_allocates_by_its_own_timing_table(digits_task):
    config = CompressionConfig(prune_ratio=0.75, bit_budget=12.0, latency_saving=1.0,
                               learning_rate=1e-4)
    student = pruned_copy(digits_task, config)
    profile = task_profile(digits_task)
    own = student_layer_latency(student, digits_task, profile)
    assert own is not None
    expected = allocate(copy.deepcopy(student), profile, 12.0, latency_saving=1.0,
                        latency_ms=own)
    assert precisions(digits_task, config, student).layer_bits == expected.layer_bits
    result = evaluate(digits_task, config)
    assert result.layer_bits == expected.layer_bits
    assert result.layer_time_share == pytest.approx(expected.time_share)


def test_trial_under_a_latency_budget_records_its_time_share(digits_task):
    result = evaluate(digits_task, CompressionConfig(bit_budget=9.0, latency_budget=1.0,
                                                     learning_rate=1e-4))
    assert result.layer_time_share is not None and result.effective_bits <= 9.0
    profile = task_profile(digits_task)
    # Within the latency budget unless the size budget cannot be met that fast.
    student = pruned_copy(digits_task, CompressionConfig())
    fastest = allocate(tag_origins(student), profile, 9.0, 1e-6).time_share
    assert result.layer_time_share <= max(1.0, fastest) + 1e-9


def test_preflight_refuses_a_budget_below_int4(digits_task):
    reason = check_setting(digits_task, "bit_budget", 4.0)
    assert reason is not None and "search bit_budget from 5.25" in reason
    assert check_setting(digits_task, "bit_budget", 6.0) is None
    # The smallest positive budget a range may start at is judged the same way.
    reason = check_setting(digits_task, "bit_budget", 0.5)
    assert reason is not None and reason.startswith("bit_budget=0.5 is below the 5.25 ")


def test_trial_records_and_reapplies_its_allocation(digits_task, tmp_path):
    config = CompressionConfig(prune_ratio=0.25, bit_budget=7.0, learning_rate=1e-4)
    result = evaluate(digits_task, config, output_dir=tmp_path)
    bits = result.layer_bits
    assert bits is not None and set(bits) == {"net.0", "net.2", "net.4"}
    assert result.effective_bits is not None and result.effective_bits <= 7.0
    assert len(set(bits.values())) > 1  # mixed: 7 bits is not reachable uniformly
    # The allocation was made on the pruned student: its costs are the pruned shapes'.
    student = pruned_copy(digits_task, config)
    assert precisions(digits_task, config, student).layer_bits == bits
    # The recipe's form (the allocation spelled out) rebuilds the same model.
    exact = config.model_copy(update={"layer_bits": bits})
    model = load_compressed(digits_task, exact, tmp_path / "model.safetensors")
    again = evaluate(digits_task, exact)
    assert again.layer_bits == bits and again.size_bytes == result.size_bytes
    assert again.accuracy == pytest.approx(result.accuracy)
    x = digits_task.val.inputs[:16]
    assert torch.equal(model(x).argmax(-1), model(x).argmax(-1))


def test_decoder_allocation_follows_depth_pruning_and_the_tied_head(tiny_llama_dir):
    from tests.objectives.tiny_decoder import tiny_decoder_task

    task = tiny_decoder_task(tiny_llama_dir)
    profile = task_profile(task)
    assert "lm_head" in profile.sensitivity and any(
        n.endswith("q_proj") for n in profile.sensitivity)
    config = CompressionConfig(depth_prune_ratio=0.5, bit_budget=7.0)
    student = pruned_copy(task, config)
    alloc = precisions(task, config, student, profile)
    # Tied to the fp32 embedding, the head is allocated but stays tied: storing it apart
    # adds bytes and sensitivity, and without a time to save nothing pays for that.
    assert alloc.layer_bits["lm_head"] == 32
    # With an int8 embedding table the head is a layer of its own, and allocated.
    untied = CompressionConfig(bit_budget=7.0, embed_bits=8)
    assert "lm_head" in precisions(task, untied, pruned_copy(task, untied), profile).layer_bits
    depth = len(student.model.layers)
    assert depth < len(task.teacher.model.layers)
    # Renumbered layers are matched to the teacher layers they came from.
    owned = [n for n in alloc.layer_bits if n != "lm_head"]
    assert {n.split(".")[2] for n in owned} == {str(i) for i in range(depth)}
    assert alloc.effective_bits <= 7.0
    q = quantize(copy.deepcopy(student), 32, layer_bits=alloc.layer_bits)
    assert _stored_weight_bytes(q, owned) == alloc.weight_bytes


def _file_tensor_bytes(model: nn.Module, path) -> int:
    from safetensors.torch import load_file

    from objectives import save_weights

    save_weights(model, path)
    return sum(t.numel() * t.element_size() for t in load_file(str(path)).values())


def test_a_tied_head_is_stored_apart_only_where_the_allocation_chooses_it(
        tiny_llama_dir, tmp_path):
    """The tied ``lm_head`` is an option of the allocation: at the base precision it stays
    tied and adds no bytes; stored apart it adds exactly its copy's bytes to the file
    (the embedding keeps the fp32 table), within the budget, which counts no elements for
    it. A recipe without it (written before) leaves it tied."""
    from objectives.operators._allocation import allocated, tied_layers
    from tests.objectives.tiny_decoder import tiny_decoder_task

    task = tiny_decoder_task(tiny_llama_dir)
    profile = task_profile(task)
    student = pruned_copy(task, CompressionConfig())
    assert tied_layers(student) == ["lm_head"] and allocated(student)[-1] == "lm_head"
    owned = [n for n in allocated(student) if n != "lm_head"]
    fp32_bytes = sum(student.get_submodule(n).weight.numel() * 4 for n in owned)
    plain = _file_tensor_bytes(student, tmp_path / "fp32.safetensors")
    # A table where int8 is slow everywhere but in the head, which int8 makes 10x faster.
    table = {n: {32: 1.0, 16: 1.0, 8: 2.0, 4: 3.0} for n in allocated(student)}
    table["lm_head"] = {32: 1.0, 16: 1.0, 8: 0.1, 4: 3.0}
    least = allocate(student, profile, 20.0, latency_ms=table)
    fastest = allocate(student, profile, 20.0, latency_saving=1.0, latency_ms=table)
    assert least.layer_bits["lm_head"] == 32 and fastest.layer_bits["lm_head"] == 8
    head = layer_costs(student, ["lm_head"])["lm_head"]
    assert head[32] == 0 and head[8] > 0
    weights = sum(student.get_submodule(n).weight.numel() for n in owned)
    for alloc, tied in ((least, True), (fastest, False)):
        assert alloc.weights == weights and alloc.effective_bits <= 20.0
        q = quantize(copy.deepcopy(student), 32, layer_bits=alloc.layer_bits)
        embedding = q.get_input_embeddings().weight
        assert (tied_layers(q) == ["lm_head"]) == tied
        assert torch.equal(embedding, student.get_input_embeddings().weight)
        # The file shrinks by the owned layers' savings and grows by the head's copy.
        stored = _file_tensor_bytes(q, tmp_path / f"{tied}.safetensors")
        assert plain - stored == fp32_bytes - alloc.weight_bytes
        # The recipe's form costs the same (objectives.precisions with layer_bits).
        exact = CompressionConfig(bit_budget=20.0, layer_bits=alloc.layer_bits)
        again = precisions(task, exact, pruned_copy(task, exact))
        assert (again.weight_bytes, again.weights) == (alloc.weight_bytes, alloc.weights)
    # A recipe written before the head was allocated: it stays tied.
    older = {n: b for n, b in fastest.layer_bits.items() if n != "lm_head"}
    q = quantize(copy.deepcopy(student), 32, layer_bits=older)
    assert tied_layers(q) == ["lm_head"]
    stored = _file_tensor_bytes(q, tmp_path / "older.safetensors")
    assert plain - stored == fp32_bytes - (fastest.weight_bytes - head[8])
    # On a bf16 base, the head at 16 is the base's own table: tied, no bytes.
    assert layer_costs(student, ["lm_head"], 16)["lm_head"][16] == 0
    q16 = quantize(copy.deepcopy(student), 16, layer_bits={
        **{n: 16 for n in owned}, "lm_head": 16})
    assert tied_layers(q16.module) == ["lm_head"]
    assert q16.module.lm_head.weight.dtype == torch.bfloat16


def test_allocation_matches_renumbered_head_pruned_layers_to_their_true_origin(tiny_llama_dir):
    """Depth pruning renumbers layers and head pruning rebuilds the attention projections:
    each allocated layer must still read the sensitivity of the teacher layer it came
    from, not of the teacher layer that now has its name."""
    import dataclasses

    from tests.objectives.tiny_decoder import tiny_decoder_task

    task = tiny_decoder_task(tiny_llama_dir)
    teacher = copy.deepcopy(task.teacher)
    with torch.no_grad():  # blocks 0 and 1 (nearly) the identity: they go, 2 and 3 move up
        for block in teacher.model.layers[:2]:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
    task = dataclasses.replace(task, teacher=teacher)
    names = [n for n, m in teacher.named_modules() if isinstance(m, nn.Linear)]
    # Attention projections of the kept teacher layers (2, 3) are fragile, those of the
    # removed ones (0, 1) are not; every other layer has a sensitivity of its own.
    fragile = {f"model.layers.{i}.self_attn.{p}" for i in (2, 3)
               for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
    sens = {}
    for i, n in enumerate(names):
        s = 1000.0 if n in fragile else 0.0 if ".self_attn." in n else 0.01 * (i + 1)
        sens[n] = {32: 0.0, 8: s, 4: 2 * s}
    weights = {n: teacher.get_submodule(n).weight.numel() for n in names}
    profile = LayerProfile(weights=weights, sensitivity=sens, rows=1)
    config = CompressionConfig(depth_prune_ratio=0.5, attn_prune_ratio=0.5, bit_budget=12.0)
    student = pruned_copy(task, config)
    assert len(student.model.layers) == 2 and student.config.num_attention_heads == 2
    alloc = precisions(task, config, student, profile)

    def origin(name: str) -> str:  # model.layers.<i>.… came from model.layers.<i + 2>.…
        parts = name.split(".")
        if parts[:2] == ["model", "layers"]:
            parts[2] = str(int(parts[2]) + 2)
        return ".".join(parts)

    attention = [n for n in alloc.layer_bits if ".self_attn." in n]
    assert len(attention) == 8 and all(alloc.layer_bits[n] == 32 for n in attention)
    expected = sum(
        sens[origin(n)][b] * student.get_submodule(n).weight.numel() / weights[origin(n)]
        for n, b in alloc.layer_bits.items()
    )
    assert alloc.sensitivity == pytest.approx(expected, rel=1e-9)
    assert alloc.effective_bits <= 12.0


def test_bf16_layers_store_two_bytes_a_weight_and_reload_exactly(tmp_path):
    from objectives._serialize import load_weights, save_weights

    model = _mlp()
    profile = measure_sensitivity(model, _inputs())
    # bf16 keeps 8 bits of mantissa: far less sensitive than int8 on every layer, so
    # halving the size is best done by storing every layer bf16.
    assert all(0 < s[16] < s[8] for s in profile.sensitivity.values())
    alloc = allocate(tag_origins(copy.deepcopy(model)), profile, 16.0)
    assert set(alloc.layer_bits.values()) == {16} and alloc.effective_bits == 16.0
    bits = {"0": 16, "2": 8, "4": 4, "6": 16}
    q = quantize(copy.deepcopy(model), 32, layer_bits=bits)
    assert plain_tensors(q)["0.weight"].dtype == torch.bfloat16
    assert _stored_weight_bytes(q, ["0"]) == 2 * 64 * 96
    save_weights(q, tmp_path / "m.safetensors")
    fresh = quantize(_mlp(seed=5), 32, layer_bits=bits)
    load_weights(fresh, tmp_path / "m.safetensors")
    x = _inputs(8)
    assert torch.equal(fresh(x), q(x))
    assert (q(x) - model(x)).abs().max() < 0.05  # int4 on one layer: close, not equal


def test_a_profile_stored_before_bf16_allocates_among_the_others():
    model = _mlp()
    measured = measure_sensitivity(model, _inputs())
    old = LayerProfile(weights=measured.weights, rows=measured.rows, version=3,
                       sensitivity={n: {b: v for b, v in s.items() if b != 16}
                                    for n, s in measured.sensitivity.items()})
    assert LayerProfile.from_dict(old.to_dict()).sensitivity == old.sensitivity
    for budget in (6.0, 16.0, 20.0):
        alloc = allocate(tag_origins(copy.deepcopy(model)), old, budget)
        assert 16 not in alloc.layer_bits.values() and alloc.effective_bits <= budget


def _island_weight_bytes(model: nn.Module, names: list[str]) -> int:
    """Stored weight bytes of ``names`` in a bf16-base model (``module.`` prefix; an
    island's layer under ``.inner``)."""
    tensors = plain_tensors(model)
    return sum(t.numel() * t.element_size() for k, t in tensors.items()
               for n in names if k.startswith((f"module.{n}.weight", f"module.{n}.inner.weight")))


def test_bf16_base_runs_the_model_in_bf16_with_fp32_islands(tmp_path):
    from objectives._serialize import load_weights, save_weights
    from objectives.operators._linear_quant import Float32Island
    from objectives.operators._quantize import BFloat16Module

    model = _fragile(_mlp(), 2)
    names = ["0", "2", "4", "6"]
    x = _inputs(16)
    # Every layer at the base's own precision is exactly uniform bf16.
    uniform = quantize(copy.deepcopy(model), 16)
    same = quantize(copy.deepcopy(model), 16, layer_bits=dict.fromkeys(names, 16))
    assert torch.equal(uniform(x), same(x))
    bits = {"0": 32, "2": 16, "4": 8, "6": 4}
    q = quantize(copy.deepcopy(model), 16, layer_bits=bits)
    assert isinstance(q, BFloat16Module)
    inner = q.module
    # The base layer is a bf16 nn.Linear; the others compute in fp32 islands.
    assert isinstance(inner[2], nn.Linear) and inner[2].weight.dtype == torch.bfloat16
    for i in (0, 4, 6):
        assert isinstance(inner[i], Float32Island)
    assert inner[0].inner.weight.dtype == torch.float32
    assert torch.equal(inner[0].inner.weight, model[0].weight)  # not rounded through bf16
    # Each layer stores what the allocation counts for it, at every precision.
    costs = layer_costs(model, names)
    for n, b in bits.items():
        assert _island_weight_bytes(q, [n]) == costs[n][b], (n, b)
    save_weights(q, tmp_path / "m.safetensors")
    fresh = quantize(_mlp(seed=5), 16, layer_bits=bits)
    load_weights(fresh, tmp_path / "m.safetensors")
    assert torch.equal(fresh(x), q(x))
    assert fresh(x).dtype == torch.float32
    with pytest.raises(TaskError, match="base of quant_bits 32 or 16, not 8"):
        quantize(copy.deepcopy(model), 8, layer_bits=bits)


def test_bf16_base_profile_measures_divergence_from_the_bf16_model():
    model = _fragile(_mlp(), 2)
    profile = measure_sensitivity(model, _inputs(), base=16)
    assert profile.base == 16
    assert LayerProfile.from_dict(profile.to_dict()) == profile
    # A version-4 profile (stored on a study before bases existed) is an fp32 base's.
    old = {k: v for k, v in profile.to_dict().items() if k != "base"}
    assert LayerProfile.from_dict({**old, "version": 4}).base == 32
    names = ["0", "2", "4", "6"]
    for n in names:
        s = profile.sensitivity[n]
        # A bf16 base offers no fp32 layer: 16 is the base, int8/int4 add divergence.
        assert set(s) == {16, 8, 4} and s[16] == 0.0
        assert s[4] > 0 and s[8] > 0
    others = max(profile.sensitivity[n][8] for n in names if n != "2")
    assert profile.sensitivity["2"][8] > 10 * others
    # Under a budget with room, the fragile layer stays in floating point, and the budget
    # holds in stored bytes.
    alloc = allocate(tag_origins(copy.deepcopy(model)), profile, 10.0)
    assert alloc.layer_bits["2"] == 16 and alloc.effective_bits <= 10.0
    # Any budget from bf16's size up is every layer bf16: uniform bf16 itself.
    for budget in (16.0, 24.0, 32.0):
        top = allocate(tag_origins(copy.deepcopy(model)), profile, budget)
        assert set(top.layer_bits.values()) == {16}
    q = quantize(copy.deepcopy(model), 16, layer_bits=alloc.layer_bits)
    assert _island_weight_bytes(q, names) == alloc.weight_bytes
    # The timing table of the bf16 base: each layer as it runs there, casts included.
    table = measure_layer_latency(model, _inputs(), base=16)
    assert sorted(table) == names
    assert all(set(t) == set(LAYER_BITS) and min(t.values()) > 0 for t in table.values())
    with pytest.raises(TaskError, match="not a layer sensitivity profile"):
        LayerProfile.from_dict({**profile.to_dict(), "base": 8})


def test_a_bf16_base_trial_allocates_by_its_own_profile(digits_task):
    config = CompressionConfig(quant_bits=16, bit_budget=12.0, learning_rate=1e-4)
    student = pruned_copy(digits_task, config)
    with pytest.raises(TaskError, match="measured on a base of 32 bits"):
        precisions(digits_task, config, student, task_profile(digits_task))
    profile = task_profile(digits_task, base=16)
    assert profile.base == 16 and profile is not task_profile(digits_task)
    result = evaluate(digits_task, config)
    assert result.layer_bits == precisions(digits_task, config, student, profile).layer_bits
    assert result.effective_bits <= 12.0
    again = evaluate(digits_task, config.model_copy(update={"layer_bits": result.layer_bits}))
    assert again.size_bytes == result.size_bytes
    assert again.accuracy == pytest.approx(result.accuracy)


def test_bf16_base_never_allocates_fp32_even_where_fp32_is_the_fastest():
    """The timing table times fp32 on a bf16 base too; where it is the fastest option of
    a layer (a small head, per-call overhead), the fastest allocation must still be one
    the base offers, or a latency_saving of 1 has no solution."""
    model = _fragile(_mlp(), 2)
    measured = measure_sensitivity(model, _inputs(), base=16)
    table = {n: {32: w / 1000, 16: 2 * w / 1000, 8: 3 * w / 1000, 4: 4 * w / 1000}
             for n, w in measured.weights.items()}  # fp32 fastest on every layer
    profile = LayerProfile(weights=measured.weights, sensitivity=measured.sensitivity,
                           rows=measured.rows, latency_ms=table, base=16)
    fp32_time = sum(t[32] for t in table.values())
    for budget in (8.0, 12.0, 16.0, 24.0):
        for saving in (0.0, 0.5, 1.0):
            alloc = allocate(tag_origins(copy.deepcopy(model)), profile, budget,
                             latency_saving=saving)
            assert 32 not in alloc.layer_bits.values(), (budget, saving)
            assert alloc.effective_bits <= budget
            # The share is of the layers' fp32 time, which a bf16 base never reaches.
            assert alloc.time_share > 1.0
        fastest = allocate(tag_origins(copy.deepcopy(model)), profile, budget, 1e-6)
        assert 32 not in fastest.layer_bits.values()
        if budget >= 16.0:  # every layer bf16 is the fastest allocation the base offers
            assert set(fastest.layer_bits.values()) == {16}
            assert fastest.time_share == pytest.approx(
                sum(t[16] for t in table.values()) / fp32_time)


def test_tied_layers_are_heads_sharing_an_embedding_table_subclasses_included():
    from objectives.operators._allocation import allocatable, allocated, tied_layers

    class Scaled(nn.Embedding):  # as Gemma scales its embeddings
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return super().forward(ids) * 2.0

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = Scaled(50, 16)
            self.body = nn.Linear(16, 16)
            self.twin = nn.Linear(16, 16)
            self.twin.weight = self.body.weight  # shared by two Linears only
            self.head = nn.Linear(16, 50, bias=False)
            self.head.weight = self.embed.weight

    model = LM()
    assert tied_layers(model) == ["head"]
    # Linears sharing a weight with each other only are neither (they stay as they are).
    assert allocatable(model) == [] and allocated(model) == ["head"]
    model.twin = nn.Linear(16, 16)
    assert allocated(model) == ["body", "twin", "head"]
