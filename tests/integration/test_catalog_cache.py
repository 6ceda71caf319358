"""The per-backend catalog cache follows changes committed by other sessions."""
from decimal import Decimal

from conftest import one


def cost(conn, model):
    return one(conn, "SELECT llm_cost.estimate_cost(%s, 1000000, 0)", model)


def test_price_inserted_in_one_session_is_used_by_another(connect):
    reader, writer = connect(), connect()
    # Warm the reader's cache first, so a stale cache would show.
    assert cost(reader, "gpt-4o") == Decimal("2.5")
    assert cost(reader, "acme-cache-1") is None

    writer.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok)"
                   " VALUES ('acme', 'acme-cache-1', 7, 0)")
    assert cost(reader, "acme-cache-1") == Decimal("7")


def test_uncommitted_and_rolled_back_changes_are_not_seen(connect):
    reader = connect()
    writer = connect(autocommit=False)
    connect().execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok)"
                      " VALUES ('acme', 'acme-cache-2', 1)")
    assert cost(reader, "acme-cache-2") == Decimal("1")

    writer.execute("UPDATE llm_cost.model_prices SET input_usd_per_mtok = 2 WHERE model = 'acme-cache-2'")
    assert cost(writer, "acme-cache-2") == Decimal("2")   # the writer sees its own change
    assert cost(reader, "acme-cache-2") == Decimal("1")   # nobody else does yet
    writer.rollback()
    assert cost(writer, "acme-cache-2") == Decimal("1")   # and after rollback, not even the writer
    assert cost(reader, "acme-cache-2") == Decimal("1")

    writer.execute("UPDATE llm_cost.model_prices SET input_usd_per_mtok = 3 WHERE model = 'acme-cache-2'")
    writer.commit()
    assert cost(reader, "acme-cache-2") == Decimal("3")


def test_alias_added_in_one_session_resolves_in_another(connect):
    reader, writer = connect(), connect()
    assert one(reader, "SELECT llm_cost.resolve_model('team-default')") is None
    writer.execute("INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('team-default', 'gpt-4.1-mini')")
    assert one(reader, "SELECT llm_cost.resolve_model('team-default')") == "gpt-4.1-mini"
    writer.execute("DELETE FROM llm_cost.model_aliases WHERE alias = 'team-default'")
    assert one(reader, "SELECT llm_cost.resolve_model('team-default')") is None
