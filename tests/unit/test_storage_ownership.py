"""Which objects count as this service's backups (ownership.py): the metadata's record and the name's time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.storage.ownership import TIME_MARGIN, Owner, OwnerLookup, time_refusal

OURS = Owner("railway", "railway", "7301234567890123456")
NOW = datetime(2026, 12, 4, 3, 0, tzinfo=timezone.utc)


def record(**changes: str) -> dict[str, str]:
    return {**OURS.metadata(), "sha256": "ab" * 32, **changes}


def test_our_record_is_ours():
    assert OURS.refusal(record()) is None


@pytest.mark.parametrize(
    "metadata, reason",
    [
        ({}, "no ownership record"),
        ({"sha256": "ab" * 32, "backup-name": "railway", "database": "railway"}, "no ownership record"),  # older upload
        (record(**{"system-identifier": "7000000000000000001"}), "another service"),  # another Railway database
        (record(database="shop"), "another service"),
        (record(**{"backup-name": "shop"}), "another service"),
        ({**OURS.metadata()}, "no sha256"),  # completed, but its final metadata never attached
    ],
)
def test_anything_else_is_not_ours(metadata, reason):
    assert reason in OURS.refusal(metadata)


def test_without_the_clusters_identity_the_rest_decides_but_nothing_may_be_deleted():
    unknown = Owner("railway", "railway", None)
    assert unknown.refusal(record(**{"system-identifier": "7000000000000000001"})) is None
    assert not unknown.can_delete and OURS.can_delete


def test_only_another_services_backups_are_flagged_for_check():
    assert OURS.is_other_service(record(**{"system-identifier": "7000000000000000001"}))
    assert not OURS.is_other_service(record())
    assert not OURS.is_other_service({"sha256": "x"})  # some file: not a service's backup


@pytest.mark.parametrize(
    "name_time, modified, trusted",
    [
        (NOW - timedelta(hours=1), NOW - timedelta(minutes=50), True),  # stamped at the start, written later
        (NOW + TIME_MARGIN + timedelta(seconds=1), None, False),  # in the future
        (datetime(2099, 12, 31, tzinfo=timezone.utc), NOW - timedelta(days=1), False),
        (NOW - timedelta(days=2), NOW - timedelta(days=3), False),  # later than the object: a clock ran ahead
        (NOW - timedelta(days=2), NOW - timedelta(days=2) - TIME_MARGIN + timedelta(seconds=1), True),  # small skew
    ],
)
def test_a_names_time_is_believed_only_when_it_can_be_true(name_time, modified, trusted):
    assert (time_refusal(name_time, modified, NOW) is None) is trusted


def test_the_lookup_asks_until_the_database_answers_then_remembers():
    answers = iter([RuntimeError("down"), "7301234567890123456"])
    calls = []

    def identify():
        calls.append(1)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    lookup = OwnerLookup("railway", "railway", identify)
    assert lookup.get().system_identifier is None
    assert lookup.get() == OURS and lookup.get() == OURS
    assert len(calls) == 2


def test_a_page_never_waits_for_the_database_to_say_who_owns_the_backups():
    """`get(wait=False)` answers at once (the list is shown while the database is slow or down) and asks
    in the background; the next call has the answer."""
    import threading

    release = threading.Event()

    def slow_identify():
        release.wait(5)
        return "7301234567890123456"

    lookup = OwnerLookup("railway", "railway", slow_identify)
    assert lookup.get(wait=False).system_identifier is None  # did not wait
    release.set()
    for _ in range(50):
        if lookup.get(wait=False) == OURS:
            break
        threading.Event().wait(0.05)
    assert lookup.get(wait=False) == OURS


@pytest.mark.parametrize(
    "metadata, unrecorded",
    [
        ({"sha256": "ab" * 32, "backup-name": "rich"}, True),  # what older versions wrote
        ({"sha256": "ab" * 32, "backup-name": "other"}, False),  # another backup name
        ({"backup-name": "rich"}, False),  # an upload that never finished: no sha256
        ({}, False),  # junk named like a backup
        (
            {
                "sha256": "ab" * 32,
                "backup-name": "rich",
                "written-by": "backup_svc",
                "database": "x",
                "system-identifier": "1",
            },
            False,
        ),  # has a record: judged by it (another service's here)
    ],
)
def test_only_an_older_versions_complete_backup_of_this_name_is_unrecorded(metadata, unrecorded):
    assert Owner("rich", "rich", "42").is_unrecorded(metadata) is unrecorded
