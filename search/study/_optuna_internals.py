"""The one place slimsearch touches Optuna's private internals, and why.

Optuna's heartbeat mechanism only runs inside ``Study.optimize``; under ask/tell (how a
Ray Tune searcher drives a study) we renew heartbeats ourselves with the public
``RDBStorage.record_heartbeat`` and sweep stale trials ourselves. To say *how long*
a trial has gone without a heartbeat — by the database's clock, so drivers on machines
with skewed clocks agree — we need the heartbeat table, which Optuna exposes only
through its private SQLAlchemy models (``optuna.storages._rdb.models``); Optuna's own
``_get_stale_trial_ids`` is private too and gives no ages. Everything here is checked
by ``tests/search/test_optuna_internals.py``, which fails loudly when Optuna changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.storages import RDBStorage


def heartbeat_ages(storage: RDBStorage, study_id: int) -> dict[int, float]:
    """Seconds since each RUNNING trial's last heartbeat, by trial number.

    Trials that never recorded a heartbeat are absent. Uses the database's clock.
    """
    import sqlalchemy
    from optuna.storages._rdb import models  # private: see the module docstring

    session = storage.scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar()
        rows = (
            session.query(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
            .join(models.TrialHeartbeatModel,
                  models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
        session.commit()
    finally:
        session.close()
    if now is None:
        return {}
    now = now.replace(tzinfo=None)
    return {number: (now - beat.replace(tzinfo=None)).total_seconds() for number, beat in rows}
