"""Stateful property test of the simulated IDC and the adapter across releases.

Rules change the catalogue (add, revise, withdraw series) and publish releases. Invariants,
checked after every release through the adapter over real HTTP (moto): the release diff
names exactly the series added, revised and withdrawn since the previous release; a revised
series has a new uuid and its old prefix stays in the bucket; every listed series fetches
whole, verified, with the simulator's bytes.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import stamina
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mirror.archive.idc import IdcArchive, diff_releases
from mirror.archive.idcsim import BucketWriter, IdcSim
from mirror.archive.sim import build_preset

pytestmark = pytest.mark.slow
_BUCKETS = itertools.count()


class ReleaseMachine(RuleBasedStateMachine):
    endpoint = ""  # set by the test from the session's moto server

    @initialize()
    def first_release(self) -> None:
        stamina.set_testing(True, attempts=10, cap=True)
        self.sim = build_preset("tiny", seed=1)
        self.tmp = Path(tempfile.mkdtemp(prefix="idc-prop-"))
        self.writer = BucketWriter(self.endpoint, f"idc-prop-{next(_BUCKETS)}")
        self.writer.create_public_bucket()
        self.idc = IdcSim(self.sim, self.writer)
        self.archive = self._publish()
        self.added: set[str] = set()
        self.revised: set[str] = set()
        self.withdrawn: set[str] = set()
        self.patients = itertools.count()

    def teardown(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _publish(self) -> IdcArchive:
        release = self.idc.publish(self.tmp / f"v{self.idc.version + 1}")
        return IdcArchive(str(release.index_dir), endpoint=self.endpoint, env={})

    @rule(count=st.integers(min_value=1, max_value=3))
    def add_series(self, count: int) -> None:
        patient = f"SX-{next(self.patients):03d}"
        self.added.add(self.sim.add_series("Sim-Lung", patient_id=patient, n_instances=count))

    @precondition(lambda self: len(self.sim.series_uids()) > 1)
    @rule(data=st.data())
    def revise_series(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(self.sim.series_uids()))
        self.sim.replace_instance(uid, 0)
        if uid not in self.added:
            self.revised.add(uid)

    @precondition(lambda self: len(self.sim.series_uids()) > 2)
    @rule(data=st.data())
    def withdraw_series(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(self.sim.series_uids()))
        self.sim.withdraw_series(uid)
        if uid in self.added:
            self.added.discard(uid)  # never released: invisible to IDC's diff
        else:
            self.withdrawn.add(uid)
        self.revised.discard(uid)

    @rule()
    def publish(self) -> None:
        before = self.archive.versions()
        self.sim.today += timedelta(days=30)
        self.archive = self._publish()
        after = self.archive.versions()
        diff = diff_releases(before, after)
        assert set(diff.new) == self.added
        assert {r.series_uid for r in diff.revised} == self.revised
        assert set(diff.removed) == self.withdrawn
        for revision in diff.revised:
            assert self.writer.keys(f"{revision.old_uuid}/"), "old prefix must stay"
        self._fetch_all()
        self.added, self.revised, self.withdrawn = set(), set(), set()

    def _fetch_all(self) -> None:
        staging = self.tmp / f"staging-{self.idc.version}"
        work = [(s, staging / s.series_uid) for s in self.archive.idc_series()]
        for (series, _), result in zip(work, self.archive.fetch_many(work), strict=True):
            assert not isinstance(result, Exception), result
            assert sorted(i.md5 for i in result.instances) == sorted(
                self.sim.true_md5s(series.series_uid)
            )
        shutil.rmtree(staging)


def test_idc_releases_stay_consistent(moto_endpoint: str) -> None:
    ReleaseMachine.endpoint = moto_endpoint
    run_state_machine_as_test(
        ReleaseMachine,
        settings=settings(
            max_examples=6, stateful_step_count=6, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )  # fmt: skip
