"""snapshot/schemas.py: a snapshot of many schemas taken apart by schema, and a part renamed to
another schema, as drift per tenant uses them (pure: no database)."""

from __future__ import annotations

from sqlmigrate_app.snapshot import SchemaObject, Snapshot
from sqlmigrate_app.snapshot.schemas import history_holders, moved, owner, schema_names, split, without


def table(name: str, *parts: str) -> SchemaObject:
    return SchemaObject("table", name, (f"table {name}", *(f"    {part}" for part in parts)))


LIVE = Snapshot(
    [
        SchemaObject("schema", "public", ("schema public",)),
        SchemaObject("schema", "tenant_a", ("schema tenant_a",)),
        SchemaObject("schema", "tenant_ab", ("schema tenant_ab",)),
        SchemaObject("schema", '"tenant-x"', ('schema "tenant-x"',)),
        SchemaObject("extension", "citext", ("extension citext: version 1.6, schema tenant_a",)),
        table("public.plans", "column id integer"),
        table("tenant_a.orders", "index o: CREATE INDEX o ON tenant_a.orders USING btree (plan)"),
        table("tenant_a.schema_migrations", "column id character varying(255)"),
        table("tenant_ab.orders"),
        table('"tenant-x".orders', 'constraint f: FOREIGN KEY (p) REFERENCES "tenant-x".plans(id)'),
        SchemaObject("comment on", "column note of table tenant_a.orders", ("comment on ...: 'x'",)),
        SchemaObject("comment on", "schema tenant_a", ("comment on schema tenant_a: 'y'",)),
        SchemaObject("function", "tenant_ab.f(integer)", ("function tenant_ab.f(integer)",)),
    ]
)


def test_schema_names_map_each_schema_to_its_name_as_objects_are_qualified_with():
    assert schema_names(LIVE) == {
        "public": "public",
        "tenant_a": "tenant_a",
        "tenant_ab": "tenant_ab",
        "tenant-x": '"tenant-x"',
    }


def test_an_object_belongs_to_the_schema_that_qualifies_its_name_not_one_with_a_longer_name():
    named = LIVE.named()

    assert owner(named["table tenant_ab.orders"], {"tenant_a", "tenant_ab"}) == "tenant_ab"
    assert owner(named["comment on column note of table tenant_a.orders"], {"tenant_a"}) == "tenant_a"
    assert owner(named["comment on schema tenant_a"], {"tenant_a"}) == "tenant_a"
    assert owner(named["extension citext"], {"tenant_a"}) is None  # the database's, whatever its schema
    assert owner(named['table "tenant-x".orders'], {'"tenant-x"'}) == '"tenant-x"'


def test_split_takes_each_schemas_objects_apart_and_leaves_its_schema_object_out():
    rest, parts = split(LIVE, ["tenant_a", '"tenant-x"'])

    assert {obj.key for obj in parts["tenant_a"]} == {
        "table tenant_a.orders",
        "table tenant_a.schema_migrations",
        "comment on column note of table tenant_a.orders",
        "comment on schema tenant_a",
    }
    assert {obj.key for obj in parts['"tenant-x"']} == {'table "tenant-x".orders'}
    assert "schema tenant_a" not in {obj.key for obj in rest}
    assert {"table tenant_ab.orders", "table public.plans", "extension citext"} <= {obj.key for obj in rest}


def test_the_schemas_with_a_history_table_of_their_own_are_the_tenants():
    assert history_holders(LIVE, "schema_migrations") == {"tenant_a"}
    assert [obj.key for obj in without(LIVE.objects, "tenant_a", "schema_migrations")].count(
        "table tenant_a.schema_migrations"
    ) == 0


def test_moved_writes_one_schemas_name_as_another_in_names_and_definitions_only_where_it_is_whole():
    rebuilt = [
        table(
            "sqlmigrate_rebuild_1.orders", "index o: CREATE INDEX o ON sqlmigrate_rebuild_1.orders USING btree (plan)"
        ),
        table("sqlmigrate_rebuild_10.orders"),
    ]

    renamed = moved(rebuilt, "sqlmigrate_rebuild_1", '"tenant-x"')

    assert [obj.key for obj in renamed.objects] == ['table "tenant-x".orders', "table sqlmigrate_rebuild_10.orders"]
    assert renamed.objects[0].lines[1] == '    index o: CREATE INDEX o ON "tenant-x".orders USING btree (plan)'
