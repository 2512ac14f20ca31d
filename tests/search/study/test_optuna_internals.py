"""The private Optuna API ``search/study/_optuna_internals.py`` relies on, checked loudly.

If this file fails after an Optuna upgrade, Optuna changed its private heartbeat models:
update ``_optuna_internals.heartbeat_ages`` (the only place that touches them).
"""

from __future__ import annotations

import time

import optuna
from optuna.distributions import FloatDistribution

from search.study import open_storage
from search.study._optuna_internals import heartbeat_ages

CHANGED = (
    "Optuna's private RDB models changed ({what}); update "
    "search/study/_optuna_internals.py, the one module that uses them"
)


def test_the_private_models_still_have_what_we_read():
    from optuna.storages._rdb import models

    for cls, columns in (
        (models.TrialModel, ("trial_id", "number", "study_id", "state")),
        (models.TrialHeartbeatModel, ("trial_id", "heartbeat")),
    ):
        missing = [c for c in columns if not hasattr(cls, c)]
        assert not missing, CHANGED.format(what=f"{cls.__name__} lacks {missing}")
    assert hasattr(optuna.storages.RDBStorage, "record_heartbeat"), CHANGED.format(
        what="RDBStorage.record_heartbeat is gone"
    )


def test_heartbeat_ages_by_trial_number(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}")
    assert hasattr(storage, "scoped_session"), CHANGED.format(what="no RDBStorage.scoped_session")
    study = optuna.create_study(storage=storage, study_name="h")
    space = {"x": FloatDistribution(0, 1)}
    beating, silent = study.ask(space), study.ask(space)
    study_id = storage.get_study_id_from_name("h")
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, beating.number)
    storage.record_heartbeat(trial_id)
    time.sleep(1.1)
    ages = heartbeat_ages(storage, study_id)
    assert set(ages) == {beating.number}, CHANGED.format(what=f"heartbeat rows read {ages}")
    assert 1.0 <= ages[beating.number] < 60
    study.tell(beating, 0.5)
    assert heartbeat_ages(storage, study_id) == {}  # finished trials are not RUNNING
    study.tell(silent, 0.5)
