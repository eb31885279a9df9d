"""The commands on a fleet, on a real PostgreSQL: ``up`` runs the shared set, then every tenant;
``--shared``, ``--tenants`` and ``--tenant`` choose; a summary in a pipeline, a progress line on a
terminal, ``--json``, exit 13 when some tenants failed; ``--plan`` and ``--sql``; ``down``,
``redo``, ``status``, ``validate`` and ``repair`` with the same choice; ``--shard``."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from .support.fleet import TenantFleet, make_fleet

pytestmark = pytest.mark.parametrize("target", ["postgresql"], indirect=True)


@pytest.fixture
def fleet(target, settings, tmp_path) -> TenantFleet:
    """Three tenants, a shared migration and two tenant migrations."""
    made = make_fleet(target, settings, tmp_path)
    target.migration("20240101000000_plans", "CREATE TABLE plans (id int PRIMARY KEY);", "DROP TABLE plans;")
    made.migration("20240101000000_accounts", "CREATE TABLE accounts (id int);", "DROP TABLE accounts;")
    made.migration("20240102000000_invoices", "CREATE TABLE invoices (id int);", "DROP TABLE invoices;")
    made.create("tenant_a", "tenant_b", "tenant_c")
    return made


TENANT_IDS = ["20240101000000_accounts", "20240102000000_invoices"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_up_runs_the_shared_set_then_every_tenant_and_sums_up_in_a_pipeline(fleet):
    result = fleet.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert result.out == "1 database: 1 applied.\n3 tenants: 3 applied.\n"
    assert fleet.target.history() == ["20240101000000_plans"]
    assert all(fleet.history(schema) == TENANT_IDS for schema in ("tenant_a", "tenant_b", "tenant_c"))
    assert "accounts" not in fleet.target.tables()

    again = fleet.call("sqlmigrate_up")

    assert again.out == "1 database: 1 up to date.\n3 tenants: 3 up to date.\n"


def test_shared_tenants_and_tenant_choose_what_runs(fleet):
    shared = fleet.call("sqlmigrate_up", shared=True)
    assert "Applying 20240101000000_plans... OK" in shared.out  # one database: the output it always had
    assert not fleet.has_history("tenant_a")

    named = fleet.call("sqlmigrate_up", tenant=["tenant_b", "tenant_c"])
    assert named.out == "2 tenants: 2 applied.\n"
    assert not fleet.has_history("tenant_a") and fleet.history("tenant_c") == TENANT_IDS

    every = fleet.call("sqlmigrate_up", tenants=True)
    assert every.out == "3 tenants: 2 up to date, 1 applied.\n"
    assert fleet.history("tenant_a") == TENANT_IDS


def test_a_failing_tenant_is_named_with_its_file_and_line_and_exits_13(fleet):
    fleet.target.query("CREATE TABLE tenant_b.invoices (id int)")
    failing = fleet.directory / "20240102000000_invoices.sql"

    result = fleet.call("sqlmigrate_up", keep_going=True)

    assert result.code == 13
    assert result.out == "1 database: 1 applied.\n3 tenants: 2 applied, 1 failed.\n"
    assert f'tenant_b: {failing}:2: 20240102000000_invoices failed: relation "invoices" already exists' in result.err
    assert result.err.endswith(f"1 of 4 failed: tenant_b ({failing}:2)")
    assert fleet.history("tenant_b") == ["20240101000000_accounts"]
    assert fleet.history("tenant_a") == fleet.history("tenant_c") == TENANT_IDS

    fleet.target.query("DROP TABLE tenant_b.invoices")
    again = fleet.call("sqlmigrate_up")

    assert (again.code, again.out) == (0, "1 database: 1 up to date.\n3 tenants: 2 up to date, 1 applied.\n")


def test_json_is_one_object_per_database_and_tenant(fleet):
    fleet.target.query("CREATE TABLE tenant_c.accounts (id int)")

    result = fleet.call("sqlmigrate_up", json=True, keep_going=True)

    assert result.code == 13
    objects = json.loads(result.out)
    assert [(o["database"], o["tenant"], o["outcome"]) for o in objects] == [
        ("target", None, "applied"),
        ("target", "tenant_a", "applied"),
        ("target", "tenant_b", "applied"),
        ("target", "tenant_c", "failed"),
    ]
    assert objects[1]["applied"] == TENANT_IDS and objects[1]["error"] is None
    assert objects[3]["applied"] == []
    assert objects[3]["error"]["file"] == str(fleet.directory / "20240101000000_accounts.sql")
    assert objects[3]["error"]["line"] == 2
    assert 'relation "accounts" already exists' in objects[3]["error"]["message"]


def test_a_terminal_gets_a_progress_line_updated_in_place(fleet):
    out = Terminal()

    call_command(
        "sqlmigrate_up", database="target", directory=str(fleet.target.directory), stdout=out, stderr=io.StringIO()
    )

    assert "\r\x1b[K4/4 done, " in out.getvalue()
    assert out.getvalue().endswith("\n1 database: 1 applied.\n3 tenants: 3 applied.\n")


def test_verbosity_2_shows_each_migration_and_0_only_failures(fleet):
    loud = fleet.call("sqlmigrate_up", tenant=["tenant_a"], verbosity=2)
    assert "tenant_a: applied 20240101000000_accounts (" in loud.out
    assert "tenant_a: applied (" in loud.out

    fleet.target.query("CREATE TABLE tenant_b.accounts (id int)")
    quiet = fleet.call("sqlmigrate_up", tenants=True, verbosity=0, keep_going=True)
    assert quiet.out == ""
    assert quiet.code == 13 and "tenant_b: " in quiet.err


def test_plan_lists_what_each_tenant_would_apply_and_sql_prints_one_tenants_script(fleet):
    assert fleet.call("sqlmigrate_up", tenant=["tenant_a"], to="20240101000000_accounts").code == 0

    plan = fleet.call("sqlmigrate_up", plan=True)
    script = fleet.call("sqlmigrate_up", sql=True, tenant=["tenant_b"])
    refused = fleet.call("sqlmigrate_up", sql=True, tenants=True)

    assert plan.out == (
        "Planned migrations:\n"
        "  target (shared set): 20240101000000_plans\n"
        "  tenant_a: 20240102000000_invoices\n"
        "  tenant_b: 20240101000000_accounts, 20240102000000_invoices\n"
        "  tenant_c: 20240101000000_accounts, 20240102000000_invoices\n"
    )
    assert not fleet.has_history("tenant_b")
    assert "tenant schema 'tenant_b' of database 'target'" in script.out
    assert "pg_catalog.quote_ident(E'tenant_b')" in script.out
    assert 'INSERT INTO "tenant_b"."schema_migrations"' in script.out
    assert (refused.code, refused.err) == (
        1,
        "--sql prints the script of one history, and 3 are chosen: add --shared, or name one --tenant",
    )


def test_down_redo_and_repair_take_the_same_choice(fleet):
    assert fleet.call("sqlmigrate_up").code == 0

    down = fleet.call("sqlmigrate_down", tenant=["tenant_a"])
    assert (down.code, down.out) == (0, "1 tenant: 1 rolled back.\n")
    assert fleet.history("tenant_a") == ["20240101000000_accounts"] and "invoices" not in fleet.tables("tenant_a")

    everywhere = fleet.call("sqlmigrate_down", everything=True)
    assert everywhere.code == 0, everywhere.text
    assert everywhere.out == "1 database: 1 rolled back.\n3 tenants: 3 rolled back.\n"
    assert fleet.target.history() == [] and fleet.history("tenant_b") == []

    nothing = fleet.call("sqlmigrate_down", tenants=True)
    assert (nothing.code, nothing.out) == (0, "3 tenants: 3 unchanged.\n")

    assert fleet.call("sqlmigrate_up", tenants=True).code == 0
    redo = fleet.call("sqlmigrate_redo", tenant=["tenant_c"])
    assert (redo.code, redo.out) == (0, "1 tenant: 1 redone.\n")

    fleet.target.query("UPDATE tenant_b.schema_migrations SET checksum = 'edited' WHERE id = '20240101000000_accounts'")
    repair = fleet.call("sqlmigrate_repair", tenants=True, interactive=False)
    assert repair.code == 0, repair.text
    assert "Repairs to the history of tenant_b:\n  20240101000000_accounts: checksum edited -> " in repair.out
    assert repair.out.endswith("1 tenant: 1 repaired.\n")
    assert fleet.call("sqlmigrate_repair", tenants=True, interactive=False).out == "Nothing to repair.\n"


def test_status_sums_up_the_tenants_and_names_the_first_few(fleet):
    assert fleet.call("sqlmigrate_up", tenant=["tenant_a", "tenant_b"]).code == 0
    fleet.target.query("UPDATE tenant_b.schema_migrations SET checksum = 'edited' WHERE id = '20240101000000_accounts'")

    status = fleet.call("sqlmigrate_status", tenants=True)
    check = fleet.call("sqlmigrate_status", tenants=True, check=True)
    behind_only = fleet.call("sqlmigrate_status", tenant=["tenant_c"], check=True)
    as_json = json.loads(fleet.call("sqlmigrate_status", json=True).out)

    assert status.code == 0
    assert status.out == (
        "3 tenants: 1 up to date, 1 behind, 1 modified.\n"
        "  modified: tenant_b (modified: 20240101000000_accounts)\n"
        "  behind: tenant_c (2 pending)\n"
    )
    assert check.code == 5 and check.err.endswith("2 of 3 not up to date (modified, behind)")
    assert (behind_only.code, behind_only.err) == (3, "1 of 1 behind: run sqlmigrate_up")
    assert [(o["tenant"], o["state"], o["pending"]) for o in as_json] == [
        (None, "behind", ["20240101000000_plans"]),
        ("tenant_a", "up to date", []),
        ("tenant_b", "modified", []),
        ("tenant_c", "behind", TENANT_IDS),
    ]


def test_validate_names_each_tenants_problems(fleet):
    assert fleet.call("sqlmigrate_up").code == 0
    fleet.target.query("INSERT INTO tenant_a.schema_migrations VALUES ('20230101000000_gone', 'Gone', now(), 'x')")

    result = fleet.call("sqlmigrate_validate", tenants=True)
    as_json = json.loads(fleet.call("sqlmigrate_validate", tenants=True, json=True).out)

    assert result.code == 6
    assert result.err.startswith("target:tenant_a: missing: ")
    assert [(o["tenant"], o["set"], o["kind"]) for o in as_json] == [("tenant_a", "tenant", "missing")]
    assert fleet.call("sqlmigrate_validate", tenant=["tenant_b"]).out == "All migrations are valid.\n"


def test_shards_split_the_tenants_among_processes_with_no_overlap(fleet):
    fleet.create(*[f"tenant_{n:02d}" for n in range(12)])
    applied = []

    for k in range(3):
        objects = json.loads(fleet.call("sqlmigrate_up", tenants=True, shard=f"{k}/3", json=True).out)
        applied += [o["tenant"] for o in objects if o["outcome"] == "applied"]

    assert sorted(applied) == sorted(fleet_tenants(fleet))
    assert len(applied) == len(set(applied))


def fleet_tenants(fleet: TenantFleet) -> list[str]:
    return [row[0] for row in fleet.target.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%%'")]


def test_asking_for_tenants_where_none_are_configured_is_one_line(fleet, settings):
    settings.SQLMIGRATE_TENANT_DIR = {}
    assert fleet.call("sqlmigrate_up", tenants=True).err == (
        "database 'target' has no tenant set: set SQLMIGRATE_TENANT_DIR"
    )
    settings.SQLMIGRATE_TENANT_DIR = {"target": fleet.directory}
    del settings.SQLMIGRATE_TENANTS
    assert fleet.call("sqlmigrate_up", tenants=True).err.startswith(
        "SQLMIGRATE_TENANTS is not set: give the dotted path"
    )
    assert fleet.call("sqlmigrate_up", tenant=["no way"]).err == (
        "--tenant: 'no way' is not a tenant schema name (letters, digits, _ and -, at most 63 characters, not starting "
        "with pg_)"
    )
    with pytest.raises(CommandError, match="--all-databases and --database: give one or the other"):
        call_command("sqlmigrate_up", database=["target"], all_databases=True)
