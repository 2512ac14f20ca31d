from __future__ import annotations

import multiprocessing as mp
import time

from objectives import MeasurementLock


def _hold_shared(path: str, seconds: float, started) -> None:
    lock = MeasurementLock(path)
    with lock.working():
        started.set()
        time.sleep(seconds)


def _try_work(path: str, ready, go, out) -> None:
    lock = MeasurementLock(path)
    with lock.working():  # open the files before timing
        pass
    ready.set()
    go.wait(30)
    t0 = time.perf_counter()
    with lock.working():
        out.put(time.perf_counter() - t0)


def test_measurement_waits_for_work_and_blocks_new_work(tmp_path):
    ctx = mp.get_context("spawn")
    path = str(tmp_path / "measure.lock")
    started, ready, go, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    worker = ctx.Process(target=_try_work, args=(path, ready, go, out))
    worker.start()
    assert ready.wait(60)
    holder = ctx.Process(target=_hold_shared, args=(path, 1.0, started))
    holder.start()
    assert started.wait(60)
    lock = MeasurementLock(path)
    t0 = time.perf_counter()
    with lock.measuring():
        waited = time.perf_counter() - t0
        go.set()  # while we measure, another process's work must wait
        time.sleep(1.0)
    blocked = out.get(timeout=30)
    holder.join(10)
    worker.join(10)
    assert waited > 0.5, "measurement must wait for in-flight work"
    assert blocked > 0.5, "new work must wait for the measurement"


def test_work_is_reentrant_and_shared(tmp_path):
    a = MeasurementLock(tmp_path / "l")
    b = MeasurementLock(tmp_path / "l")
    with a.working(), a.working(), b.working():
        pass
    with a.measuring():
        pass


def _slow_sync() -> None:
    """Stands in for torch.cuda.synchronize waiting on queued kernels (1 s of them)."""
    time.sleep(1.0)


def _hold_shared_then_sync(path: str, started) -> None:
    lock = MeasurementLock(path, synchronize=_slow_sync)
    with lock.working():
        started.set()  # the "kernels" are queued; the hold ends only after they finish


def test_measurement_waits_for_queued_work_to_synchronise(tmp_path):
    ctx = mp.get_context("spawn")
    path = str(tmp_path / "gpu.lock")
    started = ctx.Event()
    holder = ctx.Process(target=_hold_shared_then_sync, args=(path, started))
    holder.start()
    assert started.wait(60)
    t0 = time.perf_counter()
    with MeasurementLock(path).measuring():
        waited = time.perf_counter() - t0
    holder.join(10)
    assert waited > 0.5, "a measurement must not start while queued work is in flight"


def test_cpu_timing_uses_the_machine_lock_and_cuda_needs_a_gpu(tmp_path):
    import pytest
    import torch

    from objectives import device_synchronizer, lock_path

    assert lock_path(tmp_path / "m.lock", "cpu") == tmp_path / "m.lock"
    assert device_synchronizer("cpu") is None
    if torch.cuda.is_available():
        gpu = lock_path(tmp_path / "m.lock", "cuda")
        assert gpu.name.startswith("m.lock-gpu-") and gpu != tmp_path / "m.lock"
        assert lock_path(tmp_path / "m.lock", "cuda:0") == gpu  # same GPU, same lock
        assert device_synchronizer("cuda") is not None
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            lock_path(tmp_path / "m.lock", "cuda")
