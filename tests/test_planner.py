"""The planner's reading of ``--to`` (an id, a file name or a timestamp), the same for up and down,
and the closest migration it suggests for one it does not know."""

from __future__ import annotations

from .support.migrations import FIRST, SECOND, THIRD, three


def test_to_takes_a_timestamp_or_a_file_name_and_an_unknown_one_suggests_the_closest(target):
    three(target)

    assert target.call("sqlmigrate_up", to="20240101000000").code == 0
    assert target.call("sqlmigrate_up", to=f"{SECOND}.sql").code == 0
    assert target.history() == [FIRST, SECOND]
    wrong = target.call("sqlmigrate_up", to="20240103000000_create_cc")
    assert wrong.err.endswith(f"no such migration in {target.directory}; did you mean {THIRD}?")
    assert target.call("sqlmigrate_down", to="20240101000000").code == 0
    assert target.history() == [FIRST]


def test_did_you_mean_names_the_migration_with_the_given_timestamp_so_following_it_cuts_there(target):
    ids = [f"2024010{day}000000_add_column_{day}" for day in range(1, 10)]
    ids[4] = "20240105000000_add_email"  # the slug the user misremembers as add_column_5
    for number, migration_id in enumerate(ids):
        target.migration(migration_id, f"CREATE TABLE t{number} (id INTEGER);", f"DROP TABLE t{number};")
    target.call("sqlmigrate_up")

    wrong = target.call("sqlmigrate_down", to="20240105000000_add_column_5")
    suggested = wrong.err.rsplit("did you mean ", 1)[1].rstrip("?")
    followed = target.call("sqlmigrate_down", to=suggested)

    assert wrong.code == 1 and suggested == ids[4]
    assert followed.code == 0 and target.history() == ids[:5]
    assert target.call("sqlmigrate_down", to="20240150000000_add_email").err.endswith(f"did you mean {ids[4]}?")
    assert target.call("sqlmigrate_up", to="add_column_7").err.endswith(f"did you mean {ids[6]}?")
