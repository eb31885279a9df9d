def test_up_and_status(target):
    target.migration(
        "20240101000000_create_things", "CREATE TABLE things (id INTEGER PRIMARY KEY);", "DROP TABLE things;"
    )
    result = target.call("sqlmigrate_up")
    assert result.code == 0, result.text
    assert "things" in target.tables()
    assert target.history() == ["20240101000000_create_things"]
