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
