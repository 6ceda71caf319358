-- Retention: per-table policies, the purge (batches along the time index, whole partitions
-- dropped), run history. The background worker (src/features/retention.rs) and llm_cost.run_retention()
-- both use the functions below.

CREATE TABLE llm_cost.retention_policies (
    log_table  regclass    PRIMARY KEY,
    keep       interval    NOT NULL CHECK (keep > interval '0'),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name        NOT NULL DEFAULT current_user
);
COMMENT ON TABLE llm_cost.retention_policies IS 'Raw usage rows older than keep (by the table''s tracked time column) are purged by the llm_cost background worker or llm_cost.run_retention(). Rollups are never purged.';
COMMENT ON COLUMN llm_cost.retention_policies.log_table IS 'A tracked usage-log table.';
COMMENT ON COLUMN llm_cost.retention_policies.keep IS 'How long raw rows are kept, e.g. 90 days.';
-- Everybody may read it; only set_retention() and drop_retention() write it (src/features/registry.rs).
GRANT SELECT ON llm_cost.retention_policies TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('llm_cost.retention_policies', '');

CREATE TABLE llm_cost.retention_runs (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_oid          oid         NOT NULL,
    table_name         text        NOT NULL,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz,
    cutoff             timestamptz,
    rows_deleted       bigint      NOT NULL DEFAULT 0,
    partitions_dropped integer     NOT NULL DEFAULT 0,
    error              text,
    run_by             text        NOT NULL,
    partitions_skipped integer     NOT NULL DEFAULT 0
);
CREATE INDEX retention_runs_table_idx ON llm_cost.retention_runs (table_oid, started_at DESC);
CREATE INDEX retention_runs_started_idx ON llm_cost.retention_runs (started_at);
COMMENT ON TABLE llm_cost.retention_runs IS 'One row per purge of one table: when, up to which cutoff, what it removed, and the error if it failed. Rows older than llm_cost.retention_history_days are pruned.';
COMMENT ON COLUMN llm_cost.retention_runs.cutoff IS 'Rows with an event time before this were purged.';
COMMENT ON COLUMN llm_cost.retention_runs.error IS 'NULL when the run succeeded; the error message otherwise (the next run tries again).';
COMMENT ON COLUMN llm_cost.retention_runs.run_by IS 'worker, or the role that called llm_cost.run_retention().';
COMMENT ON COLUMN llm_cost.retention_runs.partitions_skipped IS 'Old partitions not dropped because their lock was not free within llm_cost.retention_lock_timeout (a reader held the table); the next run tries again.';
ALTER TABLE llm_cost.retention_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY retention_runs_read ON llm_cost.retention_runs FOR SELECT USING (llm_cost._may_see_table(table_oid));
GRANT SELECT ON llm_cost.retention_runs TO PUBLIC;

CREATE VIEW llm_cost.retention_last_runs AS
SELECT DISTINCT ON (r.table_oid) r.table_name, r.table_oid, r.started_at, r.finished_at, r.cutoff, r.rows_deleted,
       r.partitions_dropped, r.error, r.run_by, p.keep, r.partitions_skipped
  FROM llm_cost.retention_runs r
  LEFT JOIN llm_cost.retention_policies p ON p.log_table = r.table_oid
 ORDER BY r.table_oid, r.started_at DESC;
COMMENT ON VIEW llm_cost.retention_last_runs IS 'The last purge of each table (of the tables whose rows the reader may all read).';
ALTER VIEW llm_cost.retention_last_runs SET (security_invoker = true);
GRANT SELECT ON llm_cost.retention_last_runs TO PUBLIC;

CREATE FUNCTION llm_cost.set_retention(log_table regclass, keep interval, allow_short boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    result llm_cost.retention_policies;
BEGIN
    IF log_table IS NULL OR keep IS NULL OR allow_short IS NULL THEN
        RAISE EXCEPTION 'llm_cost.set_retention: log_table, keep and allow_short must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF keep <= interval '0' THEN
        RAISE EXCEPTION 'keep must be a positive interval, not %', keep USING ERRCODE = 'invalid_parameter_value',
              HINT = pg_catalog.format('Rows older than keep are deleted: did you mean %L?',
                                       pg_catalog.ltrim(pg_catalog.replace(keep::text, '-', ''), '@ '));
    END IF;
    IF keep < interval '1 hour' AND NOT allow_short THEN
        RAISE EXCEPTION 'keep of % would delete every row older than that; retention periods under one hour are refused', keep
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = pg_catalog.format('Write the unit, e.g. %L. For a test, pass allow_short => true.',
                        CASE WHEN keep < interval '1 minute' AND pg_catalog.date_part('epoch', keep) >= 1
                             THEN pg_catalog.floor(pg_catalog.date_part('epoch', keep))::pg_catalog.int8 || ' days' ELSE '1 hour' END);
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = log_table), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to set its retention', log_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE tracked_tables.log_table = set_retention.log_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked by llm_cost', log_table
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call llm_cost.track() on it first.';
    END IF;
    IF t.time_column IS NULL THEN
        RAISE EXCEPTION 'table % has no time column in its llm_cost tracking; retention needs one', log_table
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    result := pg_catalog.jsonb_populate_record(NULL::llm_cost.retention_policies, llm_cost._registry_put('retention_policies',
        pg_catalog.jsonb_build_object('log_table', log_table::oid, 'keep', keep)));
    IF NOT llm_cost._preloaded() THEN
        RAISE NOTICE 'llm_cost is not in shared_preload_libraries: nothing purges automatically; call llm_cost.run_retention() (e.g. from pg_cron)';
    END IF;
    RETURN format('keeping the rows of %s for %s (older ones are purged; rollups keep their sums)', log_table, keep);
END $$;
COMMENT ON FUNCTION llm_cost.set_retention(regclass, interval, boolean) IS 'Keeps raw rows of a tracked table for `keep`; older ones are purged (rollups are kept). Periods under one hour need allow_short => true.';

-- The spelling most callers use, set_retention('t', '90 days'): a bare number ('30', which
-- PostgreSQL reads as 30 seconds) is refused with the unit that was probably meant.
CREATE FUNCTION llm_cost.set_retention(log_table regclass, keep text, allow_short boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF keep IS NULL THEN
        RETURN llm_cost.set_retention(log_table, NULL::pg_catalog.interval, allow_short);
    END IF;
    IF pg_catalog.btrim(keep) ~ '^[+-]?[0-9]+([.][0-9]*)?$' THEN
        RAISE EXCEPTION 'keep % has no unit (PostgreSQL would read it as % seconds)', pg_catalog.quote_literal(keep), pg_catalog.btrim(keep)
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = pg_catalog.format('Write the unit: %L, %L or %L.', pg_catalog.btrim(keep) || ' days',
                                             pg_catalog.btrim(keep) || ' months', pg_catalog.btrim(keep) || ' hours');
    END IF;
    RETURN llm_cost.set_retention(log_table, keep::pg_catalog.interval, allow_short);
END $$;
COMMENT ON FUNCTION llm_cost.set_retention(regclass, text, boolean) IS 'Keeps raw rows of a tracked table for `keep` (an interval with its unit, e.g. ''90 days''); older ones are purged (rollups are kept). Periods under one hour need allow_short => true.';

-- set_retention('t', 30): a number is no period. Refused with the spelling meant (without this
-- overload the call would fail as "function does not exist").
CREATE FUNCTION llm_cost.set_retention(log_table regclass, keep numeric, allow_short boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF keep IS NULL THEN
        RETURN llm_cost.set_retention(log_table, NULL::pg_catalog.interval, allow_short);
    END IF;
    RAISE EXCEPTION 'keep % has no unit (a number is not a period)', keep
          USING ERRCODE = 'invalid_parameter_value',
                HINT = pg_catalog.format('Write the unit: %L, %L or %L.', keep || ' days', keep || ' months', keep || ' hours');
END $$;
COMMENT ON FUNCTION llm_cost.set_retention(regclass, numeric, boolean) IS 'Refuses a number: write the period with its unit, e.g. ''90 days''.';

CREATE FUNCTION llm_cost.drop_retention(log_table regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = log_table), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to drop its retention', log_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN llm_cost._registry_delete('retention_policies', log_table::oid);
END $$;
COMMENT ON FUNCTION llm_cost.drop_retention(regclass) IS 'Stops purging a table. Returns false if it had no policy.';

-- The time column and cutoff of a policy.
CREATE FUNCTION llm_cost._retention_target(p_table regclass, OUT time_col text, OUT cutoff timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.time_column, now() - p.keep
      FROM llm_cost.retention_policies p JOIN llm_cost.tracked_tables t ON t.log_table = p.log_table
     WHERE p.log_table = p_table
$$;

-- Drops the partitions of a range-partitioned table (partitioned by its time column) whose upper
-- bound is at or before the cutoff: how many were dropped, and how many were skipped because
-- their lock (AccessExclusive on the parent too) was not free within lock_timeout. Called by
-- llm_cost._retention_drop_partitions (Rust), as the table's owner with a short lock_timeout:
-- inserts queue behind a waiting DROP, so it never waits long.
CREATE FUNCTION llm_cost._drop_old_partitions(p_table regclass, p_time_col text, p_cutoff timestamptz,
                                              OUT dropped integer, OUT skipped integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
    upper_bound timestamptz;
    zone text := (SELECT t.time_zone FROM llm_cost.tracked_tables t WHERE t.log_table = p_table);
    typ oid := (SELECT atttypid FROM pg_catalog.pg_attribute WHERE attrelid = p_table AND attname = p_time_col AND NOT attisdropped);
BEGIN
    dropped := 0; skipped := 0;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table pt
                    WHERE pt.partrelid = p_table AND pt.partstrat = 'r' AND pt.partnatts = 1
                      AND pt.partattrs[0] = (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_table AND attname = p_time_col)) THEN
        RETURN;
    END IF;
    FOR part IN SELECT c.oid::regclass AS rel, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
                  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = p_table AND c.relkind = 'r' LOOP
        CONTINUE WHEN part.bound = 'DEFAULT';
        -- Bounds of a timestamp or date column are local times in the table's zone.
        upper_bound := CASE WHEN typ = 'timestamptz'::regtype THEN substring(part.bound FROM 'TO \(''([^'']*)''\)')::timestamptz
                            ELSE substring(part.bound FROM 'TO \(''([^'']*)''\)')::timestamp AT TIME ZONE coalesce(zone, 'UTC') END;
        IF upper_bound IS NOT NULL AND upper_bound <= p_cutoff THEN
            BEGIN
                EXECUTE format('DROP TABLE %s', part.rel);
                dropped := dropped + 1;
            EXCEPTION WHEN lock_not_available THEN
                skipped := skipped + 1;
            END;
        END IF;
    END LOOP;
END $$;

-- Deletes at most p_batch rows older than the cutoff, oldest first along the time index.
-- A Citus table (whose rows are on the workers) is purged by DELETEs on the time column only,
-- which Citus runs on every shard: see llm_cost._purge_batch_citus.
CREATE FUNCTION llm_cost._purge_batch(p_table regclass, p_time_col text, p_cutoff timestamptz, p_batch integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    cutoff text := llm_cost._event_time_literal(p_table, p_cutoff);  -- in the column's type and zone
BEGIN
    IF (SELECT d.method FROM llm_cost._citus_distribution(p_table) d) IS NOT NULL THEN
        RETURN llm_cost._purge_batch_citus(p_table, p_time_col, cutoff, p_batch);
    END IF;
    IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = p_table) = 'p' THEN
        EXECUTE format('DELETE FROM %1$s WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM %1$s WHERE %2$I < %3$s ORDER BY %2$I LIMIT $1)',
                       p_table, p_time_col, cutoff) USING p_batch;
    ELSE
        EXECUTE format('DELETE FROM %1$s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %1$s WHERE %2$I < %3$s ORDER BY %2$I LIMIT $1))',
                       p_table, p_time_col, cutoff) USING p_batch;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- A batch of a Citus table: the oldest rows up to the time of the (p_batch + 1)-th oldest one,
-- found by a multi-shard ORDER BY ... LIMIT (each shard reads its time index), then one DELETE by
-- time, which Citus routes to every shard. Ties at that time make a step smaller: steps repeat
-- until p_batch rows are gone or none older than the cutoff is left (fewer than p_batch
-- returned means done, as for a plain table).
CREATE FUNCTION llm_cost._purge_batch_citus(p_table regclass, p_time_col text, p_cutoff text, p_batch integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    total bigint := 0;
    upto text;
BEGIN
    LOOP
        EXECUTE format('SELECT %2$I::text FROM %1$s WHERE %2$I < %3$s ORDER BY %2$I OFFSET $1 LIMIT 1', p_table, p_time_col, p_cutoff)
           INTO upto USING p_batch - total;
        IF upto IS NULL THEN
            EXECUTE format('DELETE FROM %1$s WHERE %2$I < %3$s', p_table, p_time_col, p_cutoff);
            GET DIAGNOSTICS n = ROW_COUNT;
            RETURN total + n;
        END IF;
        EXECUTE format('DELETE FROM %1$s WHERE %2$I < %3$s', p_table, p_time_col, pg_catalog.quote_literal(upto));
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = 0 THEN
            -- More than the rest of the batch share the oldest time: take them all.
            EXECUTE format('DELETE FROM %1$s WHERE %2$I <= %3$s', p_table, p_time_col, pg_catalog.quote_literal(upto));
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
        total := total + n;
        EXIT WHEN total >= p_batch;
    END LOOP;
    RETURN total;
END $$;

-- Records one run. Executable only by the extension's owner: llm_cost._record_run (Rust) calls
-- it after checking that its caller has the rights of the table's owner.
CREATE FUNCTION llm_cost._record_run_as_owner(p_table oid, p_name text, p_started timestamptz, p_cutoff timestamptz,
                                              p_rows bigint, p_parts integer, p_error text, p_by text, p_skipped integer)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO llm_cost.retention_runs (table_oid, table_name, started_at, finished_at, cutoff, rows_deleted,
                                         partitions_dropped, error, run_by, partitions_skipped)
    SELECT p_table, p_name, p_started, clock_timestamp(), p_cutoff, p_rows, p_parts, p_error, p_by, p_skipped
     WHERE EXISTS (SELECT 1 FROM llm_cost.retention_policies WHERE log_table = p_table);
    DELETE FROM llm_cost.retention_runs
     WHERE started_at < now() - make_interval(days => greatest(coalesce(nullif(pg_catalog.current_setting('llm_cost.retention_history_days', true), '')::int, 30), 1));
$$;
REVOKE ALL ON FUNCTION llm_cost._record_run_as_owner(oid, text, timestamptz, timestamptz, bigint, integer, text, text, integer) FROM PUBLIC;

-- The purge, now, in this transaction: for managed Postgres without the preloaded library and
-- for pg_cron. Purges only the tables the caller owns (all of them for a superuser).
CREATE FUNCTION llm_cost.run_retention()
RETURNS TABLE (log_table regclass, cutoff timestamptz, rows_deleted bigint, partitions_dropped integer, error text,
               partitions_skipped integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
    target record;
    started timestamptz;
    n bigint;
    parts integer[];
    batch integer := greatest(coalesce(nullif(pg_catalog.current_setting('llm_cost.retention_batch_size', true), '')::int, 10000), 1);
    caller name := current_user;
BEGIN
    FOR p IN SELECT rp.log_table AS rel, c.relowner
               FROM llm_cost.retention_policies rp JOIN pg_catalog.pg_class c ON c.oid = rp.log_table
              ORDER BY rp.log_table::text LOOP
        CONTINUE WHEN NOT pg_catalog.pg_has_role(caller, p.relowner, 'USAGE');
        started := clock_timestamp();
        log_table := p.rel; rows_deleted := 0; partitions_dropped := 0; partitions_skipped := 0; error := NULL;
        BEGIN
            SELECT * INTO target FROM llm_cost._retention_target(p.rel);
            cutoff := target.cutoff;
            -- Both run as the table's owner under a security-restricted operation.
            parts := llm_cost._retention_drop_partitions(p.rel, target.time_col, target.cutoff);
            partitions_dropped := parts[1]; partitions_skipped := parts[2];
            LOOP
                n := llm_cost._retention_purge_batch(p.rel, target.time_col, target.cutoff, batch);
                rows_deleted := rows_deleted + n;
                EXIT WHEN n < batch;
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            error := SQLERRM;
            rows_deleted := 0; partitions_dropped := 0; partitions_skipped := 0;
        END;
        PERFORM llm_cost._record_run(p.rel::oid, p.rel::text, started, cutoff, rows_deleted, partitions_dropped, error,
                                     caller, partitions_skipped);
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION llm_cost.run_retention() IS
'Purges now, in the calling transaction, every table with a retention policy that the caller owns (all for a superuser); returns what it purged. Each purge runs as the table''s owner under a security-restricted operation (as the background worker''s does). The background worker does the same in short transactions.';
