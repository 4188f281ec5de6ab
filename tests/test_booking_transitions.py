"""The transition tables, pure: who may do what, and when."""

from datetime import UTC, datetime, timedelta

import pytest

from scheduling import transitions as t

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
START = NOW + timedelta(days=2)


def situation(actor: str, **kw) -> t.Situation:
    return t.Situation(now=kw.pop("now", NOW), start=kw.pop("start", START), actor=actor, **kw)


def pairs(kind: str) -> set[tuple[str, str]]:
    return {(rule.source, rule.target) for rule in t.TABLES[kind]}


def test_centre_table_is_exactly_the_specified_one():
    assert pairs(t.CENTRE) == {
        ("booked", "checked_in"), ("checked_in", "completed"), ("booked", "cancelled"), ("booked", "no_show")}


def test_nursing_table_is_exactly_the_specified_one():
    assert pairs(t.NURSING) == {
        ("requested", "confirmed"), ("confirmed", "on_the_way"), ("on_the_way", "in_service"),
        ("in_service", "completed"), ("requested", "rejected"), ("requested", "expired"),
        ("requested", "cancelled"), ("confirmed", "cancelled"), ("confirmed", "no_show")}


@pytest.mark.parametrize("kind", t.KINDS)
def test_terminal_statuses_have_no_way_out(kind):
    for status in t.TERMINAL & t.STATUSES[kind]:
        assert t.targets(kind, status) == []
    # and every non-terminal status has one
    for status in t.STATUSES[kind] - t.TERMINAL:
        assert t.targets(kind, status)


@pytest.mark.parametrize("kind,source,target", [
    ("centre", "completed", "cancelled"), ("centre", "cancelled", "booked"), ("centre", "booked", "completed"),
    ("nursing", "requested", "completed"), ("nursing", "on_the_way", "cancelled"), ("nursing", "rejected",
                                                                                      "confirmed"),
    ("nursing", "expired", "requested"), ("centre", "booked", "confirmed"),
])
def test_transitions_outside_the_table_are_refused(kind, source, target):
    with pytest.raises(t.TransitionError) as caught:
        t.decide(kind, source, target, situation(t.ADMIN, reason="x"))
    assert caught.value.code == "invalid_transition"
    assert "不能变更为" in caught.value.message


@pytest.mark.parametrize("kind,source,target,actor", [
    ("centre", "booked", "checked_in", t.RESIDENT),
    ("centre", "booked", "checked_in", t.CLINIC_STAFF),
    ("centre", "booked", "checked_in", t.NURSE),
    ("nursing", "requested", "confirmed", t.RESIDENT),
    ("nursing", "requested", "confirmed", t.NURSE),
    ("nursing", "requested", "confirmed", t.CENTRE_STAFF),
    ("nursing", "requested", "rejected", t.RESIDENT),
    ("nursing", "requested", "expired", t.CLINIC_STAFF),
    ("nursing", "requested", "expired", t.RESIDENT),
    ("nursing", "confirmed", "on_the_way", t.RESIDENT),
    ("nursing", "confirmed", "cancelled", t.NURSE),
    ("centre", "booked", "cancelled", t.SYSTEM),
])
def test_actor_not_in_the_rule_is_forbidden(kind, source, target, actor):
    with pytest.raises(t.TransitionError) as caught:
        t.decide(kind, source, target, situation(actor, reason="原因", review_deadline=NOW - timedelta(hours=1),
                                                  actor_is_assigned_nurse=True))
    assert (caught.value.code, caught.value.kind) == ("forbidden", "forbidden")


@pytest.mark.parametrize("kind,source", [("centre", "booked"), ("nursing", "requested"), ("nursing", "confirmed")])
def test_family_cancels_until_the_deadline_then_only_staff(kind, source):
    deadline = START - timedelta(hours=4)
    before = situation(t.RESIDENT, now=deadline - timedelta(seconds=1), cancel_deadline=deadline)
    assert t.decide(kind, source, t.CANCELLED, before).releases_seat
    after = situation(t.RESIDENT, now=deadline, cancel_deadline=deadline)
    with pytest.raises(t.TransitionError) as caught:
        t.decide(kind, source, t.CANCELLED, after)
    assert caught.value.code == "cancel_deadline_passed"
    staff = t.CENTRE_STAFF if kind == "centre" else t.CLINIC_STAFF
    with pytest.raises(t.TransitionError) as caught:
        t.decide(kind, source, t.CANCELLED, situation(staff, now=deadline, cancel_deadline=deadline))
    assert caught.value.code == "reason_required"
    rule = t.decide(kind, source, t.CANCELLED, situation(staff, now=deadline, cancel_deadline=deadline,
                                                          reason="护士生病"))
    assert rule.notification == "booking_cancelled"


def test_reject_needs_a_reason():
    with pytest.raises(t.TransitionError) as caught:
        t.decide("nursing", "requested", "rejected", situation(t.CLINIC_STAFF, reason="  "))
    assert caught.value.code == "reason_required"
    rule = t.decide("nursing", "requested", "rejected", situation(t.CLINIC_STAFF, reason="不在服务时间"))
    assert rule.releases_seat and rule.notification == "booking_rejected"


def test_confirm_only_before_review_deadline_and_expire_only_after():
    deadline = NOW + timedelta(hours=1)
    rule = t.decide("nursing", "requested", "confirmed", situation(t.CLINIC_STAFF, review_deadline=deadline))
    assert rule.assigns_nurse and rule.reminders == t.SCHEDULE and not rule.releases_seat
    with pytest.raises(t.TransitionError) as caught:
        t.decide("nursing", "requested", "expired", situation(t.SYSTEM, review_deadline=deadline))
    assert caught.value.code == "review_deadline_not_reached"
    late = situation(t.CLINIC_STAFF, now=deadline, review_deadline=deadline)
    with pytest.raises(t.TransitionError) as caught:
        t.decide("nursing", "requested", "confirmed", late)
    assert caught.value.code == "review_deadline_passed"
    rule = t.decide("nursing", "requested", "expired", situation(t.SYSTEM, now=deadline, review_deadline=deadline))
    assert rule.releases_seat and rule.notification == "booking_expired"


def test_nurse_moves_only_her_own_visit_forward():
    for source, target in [("confirmed", "on_the_way"), ("on_the_way", "in_service"), ("in_service", "completed")]:
        with pytest.raises(t.TransitionError) as caught:
            t.decide("nursing", source, target, situation(t.NURSE, actor_is_assigned_nurse=False))
        assert caught.value.kind == "forbidden"
        assert t.decide("nursing", source, target, situation(t.NURSE, actor_is_assigned_nurse=True, now=START))
        assert t.decide("nursing", source, target, situation(t.CLINIC_STAFF, now=START))


def test_no_show_only_once_the_visit_has_started():
    for kind, source, actor in [("centre", "booked", t.CENTRE_STAFF), ("nursing", "confirmed", t.CLINIC_STAFF)]:
        with pytest.raises(t.TransitionError) as caught:
            t.decide(kind, source, t.NO_SHOW, situation(actor))
        assert caught.value.code == "visit_not_started"
        assert t.decide(kind, source, t.NO_SHOW, situation(actor, now=START))
    assert t.decide("nursing", "confirmed", "no_show", situation(t.CLINIC_STAFF, now=START)).releases_nurse


def test_effects_declared_on_the_rules():
    cancel_confirmed = t.rule_for("nursing", "confirmed", "cancelled")
    assert cancel_confirmed.releases_seat and cancel_confirmed.releases_nurse and cancel_confirmed.reminders == t.CANCEL
    for kind in t.KINDS:
        for rule in t.TABLES[kind]:
            # exactly the transitions into cancelled / rejected / expired give the seat back
            assert rule.releases_seat == (rule.target in {t.CANCELLED, t.REJECTED, t.EXPIRED})


def test_quota_counts_only_upcoming_bookings():
    assert t.quota_delta(None, t.BOOKED) == 1
    assert t.quota_delta(None, t.REQUESTED) == 1
    assert t.quota_delta(t.REQUESTED, t.CONFIRMED) == 0
    assert t.quota_delta(t.CONFIRMED, t.ON_THE_WAY) == -1
    assert t.quota_delta(t.BOOKED, t.CANCELLED) == -1
    assert t.quota_delta(t.BOOKED, t.CHECKED_IN) == -1
    assert t.quota_delta(t.CHECKED_IN, t.COMPLETED) == 0


def test_reschedule_rules():
    deadline = START - timedelta(hours=4)
    t.check_reschedule("centre", "booked", situation(t.RESIDENT, cancel_deadline=deadline))
    t.check_reschedule("nursing", "requested", situation(t.RESIDENT, cancel_deadline=deadline))
    with pytest.raises(t.TransitionError) as caught:
        t.check_reschedule("nursing", "confirmed", situation(t.RESIDENT, cancel_deadline=deadline))
    assert "先取消" in caught.value.message
    with pytest.raises(t.TransitionError) as caught:
        t.check_reschedule("centre", "booked", situation(t.RESIDENT, now=deadline, cancel_deadline=deadline))
    assert caught.value.code == "cancel_deadline_passed"
    with pytest.raises(t.TransitionError) as caught:
        t.check_reschedule("centre", "booked", situation(t.CENTRE_STAFF))
    assert caught.value.kind == "forbidden"
