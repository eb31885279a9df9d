"""The cycle collector during a command: Django's start-up objects frozen, handed back after."""

from __future__ import annotations

import gc

from sqlmigrate_app.management.base import start_up_frozen


def test_objects_made_before_a_command_are_frozen_while_it_runs_and_handed_back_after():
    assert gc.get_freeze_count() == 0
    before: object = object.__new__(type("Made", (), {}))
    with start_up_frozen():
        assert gc.get_freeze_count() > 0
        assert not any(obj is before for obj in gc.get_objects())  # frozen objects are not tracked here
    assert gc.get_freeze_count() == 0
    assert any(obj is before for obj in gc.get_objects())


def test_a_process_that_froze_objects_itself_is_left_as_it_is():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with start_up_frozen():
            made_inside: list[object] = [object.__new__(type("Made", (), {}))]
        assert gc.get_freeze_count() == frozen
        assert any(obj is made_inside[0] for obj in gc.get_objects())
    finally:
        gc.unfreeze()


def test_call_command_hands_everything_back(target):
    sql = "-- UP\nCREATE TABLE one (id int);\n-- DOWN\nDROP TABLE one;\n"
    (target.directory / "20240101000000_one.sql").write_text(sql)
    assert target.call("sqlmigrate_up").code == 0
    assert target.call("sqlmigrate_status").code == 0
    assert gc.get_freeze_count() == 0
