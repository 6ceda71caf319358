"""Usage logs against a real cluster: the shared application schemas, COPY, roles, warnings."""
import io
from decimal import Decimal

import psycopg
import pytest

from conftest import DATA, one


def load_schema(conn, name):
    conn.execute((DATA / name).read_text())


def test_shared_schemas_tracked_with_one_call_each(connect):
    c = connect()
    load_schema(c, "api_usage_log.sql")
    load_schema(c, "llm_cost_events.sql")
    # api_usage_log has no cost column: track adds one (and cost_source).
    c.execute("SELECT llm_cost.track('public.api_usage_log', provider_column => 'provider', add_cost_column => true)")
    c.execute("""SELECT llm_cost.track('public.llm_cost_events', cache_read_tokens_column => 'cache_read_tokens',
                   cache_write_tokens_column => 'cache_write_tokens', cost_column => 'estimated_cost_usd',
                   provider_column => 'provider')""")
    assert one(c, "SELECT count(*) FROM llm_cost.tracked_tables") == 3

    contributor = one(c, "INSERT INTO contributor (handle) VALUES ('ada') RETURNING id")
    c.execute("""INSERT INTO api_usage_log (contributor_id, model, endpoint, input_tokens, output_tokens)
                 VALUES (%s, 'claude-sonnet-4-5', '/summarize', 100000, 1000000)""", (contributor,))
    with c.cursor() as cur:
        with cur.copy("COPY api_usage_log (contributor_id, model, endpoint, input_tokens, output_tokens) FROM STDIN") as cp:
            for i in range(1000):
                cp.write_row((contributor, "gpt-4o-mini", "/reply", 1000, 100))
    assert one(c, "SELECT cost_usd FROM api_usage_log WHERE endpoint = '/summarize'") == Decimal("15.3")
    assert one(c, "SELECT sum(cost_usd) FROM api_usage_log WHERE endpoint = '/reply'") == Decimal("0.21")
    assert one(c, "SELECT count(*) FROM api_usage_log WHERE cost_source = 'estimated'") == 1001
    # provider NOT NULL DEFAULT 'claude' is the application's value, kept.
    assert one(c, "SELECT DISTINCT provider FROM api_usage_log") == "claude"

    c.execute("""INSERT INTO llm_cost_events (repo, task_type, model, provider, sdk, input_tokens, output_tokens,
                   cache_read_tokens, cache_write_tokens, estimated_cost_usd)
                 VALUES ('acme/app', 'review', 'claude-haiku-4-5', 'anthropic', 'ai', 1000, 200, 5000, 0, DEFAULT),
                        ('acme/app', 'review', 'claude-sonnet-4-5', 'anthropic', 'agent', 1000, 200, 0, 0, 0.0421)""")
    rows = "".join(f"acme/api\tfix\tus.anthropic.claude-sonnet-4-5-20250929-v1:0\tanthropic\tai\t{i}\t{i}\t0\t0\n" for i in range(1, 501))
    with c.cursor() as cur:
        with cur.copy("COPY llm_cost_events (repo, task_type, model, provider, sdk, input_tokens, output_tokens,"
                      " cache_read_tokens, cache_write_tokens) FROM STDIN") as cp:
            cp.write(rows)
    assert one(c, "SELECT estimated_cost_usd FROM llm_cost_events WHERE model = 'claude-haiku-4-5'") == Decimal("0.0025")
    assert one(c, "SELECT estimated_cost_usd FROM llm_cost_events WHERE sdk = 'agent'") == Decimal("0.0421")
    # sum(1..500) = 125250 tokens in and out at Bedrock's regional 3.30 + 16.50 per 1M (the name
    # says Bedrock; the provider column says the vendor, which lists no such id)
    assert one(c, "SELECT sum(estimated_cost_usd) FROM llm_cost_events WHERE repo = 'acme/api'") == Decimal("2.47995")


def test_unknown_model_warns_once_per_session(connect):
    c = connect()
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    for _ in range(3):
        c.execute("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('never-heard-of-it', 1, 1), ('never-heard-of-it', 2, 2)")
    assert [n for n in notices if "never-heard-of-it" in n] == [
        'llm_cost: no price for model "never-heard-of-it"; rows are stored unpriced (cost NULL) and listed in llm_cost.unpriced_models']
    assert one(c, "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'never-heard-of-it'") == 6
    # A new session is warned again.
    d = connect()
    again = []
    d.add_notice_handler(lambda x: again.append(x.message_primary))
    d.execute("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('never-heard-of-it', 1, 1)")
    assert len([n for n in again if "never-heard-of-it" in n]) == 1


def test_rolled_back_unpriced_rows_are_not_counted(connect):
    c = connect(autocommit=False)
    c.execute("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('ghost-model', 1, 1)")
    c.rollback()
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        c.execute("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('ghost-model', 1, 1), ('ghost-model', -1, 1)")
    c.rollback()
    c.execute("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('ghost-model', 1, 1)")
    c.commit()
    assert one(c, "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'ghost-model'") == 1


def test_unpriced_rows_are_listed_whatever_path_they_took(connect):
    """Rows of an unknown model are listed in unpriced_models even when a savepoint around other
    work rolled back in the same statement, and when they went straight into a partition (whose
    statement triggers are not the tracked table's: listed just before commit)."""
    c = connect()
    c.execute("CREATE TABLE up_log (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, "
              "cost_usd numeric) PARTITION BY RANGE (created_at)")
    c.execute("CREATE TABLE up_log_2026 PARTITION OF up_log FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    c.execute("SELECT llm_cost.track('up_log')")
    c.execute("INSERT INTO up_log_2026 VALUES ('2026-02-01', 'partition-only-model', 1, 1), ('2026-02-03', 'partition-only-model', 1, 1)")
    assert one(connect(), "SELECT rows || ' ' || to_char(first_seen AT TIME ZONE 'UTC', 'MM-DD') || ' ' || "
                          "to_char(last_seen AT TIME ZONE 'UTC', 'MM-DD') FROM llm_cost.unpriced_models "
                          "WHERE model = 'partition-only-model' AND log_table = 'up_log'::regclass") == "2 02-01 02-03"
    # Another AFTER trigger catches an error for every row (a subtransaction that aborts).
    c.execute("CREATE FUNCTION up_catch() RETURNS trigger LANGUAGE plpgsql AS "
              "$$ BEGIN BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END; RETURN NULL; END $$")
    c.execute("CREATE TRIGGER up_catch AFTER INSERT ON up_log_2026 FOR EACH ROW EXECUTE FUNCTION up_catch()")
    c.execute("INSERT INTO up_log SELECT '2026-02-02', 'caught-model', 1, 1 FROM generate_series(1, 3)")
    c.execute("INSERT INTO up_log_2026 SELECT '2026-02-02', 'caught-model', 1, 1 FROM generate_series(1, 2)")
    assert one(connect(), "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'caught-model'") == 5
    # A rolled-back savepoint takes its own rows out, and only those.
    t = connect(autocommit=False)
    t.execute("INSERT INTO up_log VALUES ('2026-02-04', 'savepoint-model', 1, 1)")
    t.execute("SAVEPOINT s")
    t.execute("INSERT INTO up_log_2026 VALUES ('2026-02-04', 'savepoint-model', 1, 1)")
    t.execute("ROLLBACK TO SAVEPOINT s")
    t.execute("INSERT INTO up_log_2026 VALUES ('2026-02-05', 'savepoint-model', 1, 1)")
    t.commit()
    assert one(connect(), "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'savepoint-model'") == 2
    assert one(c, "SELECT count(*) FROM up_log WHERE cost_usd IS NULL") == 9


def test_copy_with_a_bad_row_is_rejected_whole(connect):
    c = connect()
    before = one(c, "SELECT count(*) FROM llm_cost.usage_events")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="output_tokens must not be negative"):
        with c.cursor() as cur:
            with cur.copy("COPY llm_cost.usage_events (model, input_tokens, output_tokens) FROM STDIN") as cp:
                cp.write("gpt-4o\t1\t1\ngpt-4o\t1\t-1\ngpt-4o\t1\t1\n")
    assert one(c, "SELECT count(*) FROM llm_cost.usage_events") == before


def test_track_requires_ownership(connect):
    admin = connect()
    admin.execute("DROP ROLE IF EXISTS it_owner; DROP ROLE IF EXISTS it_other")
    admin.execute("CREATE ROLE it_owner LOGIN; CREATE ROLE it_other LOGIN")
    admin.execute("GRANT CREATE ON SCHEMA public TO it_owner")
    owner, other = connect("it_owner"), connect("it_other")
    owner.execute("CREATE TABLE owned_log (model text, input_tokens int, output_tokens int, created_at timestamptz DEFAULT now(), cost_usd numeric)")
    owner.execute("GRANT SELECT, INSERT ON owned_log TO it_other")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of table public.owned_log to track it"):
        other.execute("SELECT llm_cost.track('owned_log')")
    owner.execute("SELECT llm_cost.track('owned_log')")
    # Another user may insert (and gets priced rows) but not untrack.
    other.execute("INSERT INTO owned_log (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1000000, 0), ('unknown-x', 1, 1)")
    assert one(owner, "SELECT sum(cost_usd) FROM owned_log") == Decimal("2.5")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        other.execute("SELECT llm_cost.untrack('owned_log')")
    # The registry is written only through the API: nobody writes it directly.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        other.execute("DELETE FROM llm_cost.tracked_tables")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        owner.execute("DELETE FROM llm_cost.tracked_tables")
    assert one(admin, "SELECT count(*) FROM llm_cost.tracked_tables WHERE log_table = 'owned_log'::regclass") == 1
    owner.execute("SELECT llm_cost.untrack('owned_log')")
    assert one(admin, "SELECT count(*) FROM llm_cost.tracked_tables WHERE log_table = 'owned_log'::regclass") == 0
    owner.execute("DROP TABLE owned_log")


def test_drop_and_recreate_extension(dbname, connect):
    c = connect()
    c.execute("CREATE TABLE keep_me (model text, input_tokens int, output_tokens int, created_at timestamptz, cost_usd numeric)")
    c.execute("SELECT llm_cost.track('keep_me')")
    c.execute("DROP EXTENSION llm_cost CASCADE")
    assert one(c, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'keep_me'::regclass AND NOT tgisinternal") == 0
    c.execute("CREATE EXTENSION llm_cost")
    assert one(c, "SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 100000, 1000000)") == Decimal("15.3")
    c.execute("DROP TABLE keep_me")
