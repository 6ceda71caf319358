-- Backfill: prices the rows a table held before llm_cost.track() (src/features/backfill.rs).
--
-- A row needs pricing when its cost_source column is NULL (tables with one), else when its cost
-- is NULL. Each row is priced as if it were being inserted now, at its own event time: a cost
-- the application stored (not NULL, not the column default) is kept and marked provided; the
-- rest is estimated, or stored unpriced and listed in llm_cost.unpriced_models. Rollups follow
-- through their update trigger, in the same transaction as each batch.
--
-- Batches are ranges of the table's blocks (a TID range scan: each batch reads only its
-- blocks), about batch_rows rows each; the procedure commits after each batch, so row locks are
-- held for one batch at a time.

-- The batches: per leaf partition (or the table), block ranges of about p_batch_rows rows. The
-- rows per block come from the statistics, or (never analyzed) from counting the first blocks.
CREATE FUNCTION llm_cost._backfill_plan(p_table regclass, p_batch_rows integer)
RETURNS TABLE (part oid, from_block bigint, to_block bigint, blocks bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l record;
    per_block numeric;
    sampled bigint;
    step bigint;
BEGIN
    FOR l IN SELECT t.relid, c.relpages, c.reltuples,
                    pg_catalog.pg_relation_size(t.relid) / pg_catalog.current_setting('block_size')::bigint AS nblocks
               FROM (SELECT x.relid FROM pg_catalog.pg_partition_tree(p_table) x WHERE x.isleaf
                     UNION  -- (a table that is not partitioned has no partition tree)
                     SELECT p_table WHERE (SELECT k.relkind FROM pg_catalog.pg_class k WHERE k.oid = p_table) = 'r') t
               JOIN pg_catalog.pg_class c ON c.oid = t.relid
              ORDER BY t.relid LOOP
        CONTINUE WHEN l.nblocks = 0;
        IF l.relpages > 0 AND l.reltuples > 0 THEN
            per_block := l.reltuples / l.relpages;
        ELSE
            EXECUTE format('SELECT count(*) FROM %s s WHERE s.ctid < ''(%s,0)''::pg_catalog.tid', l.relid::regclass,
                           least(l.nblocks, 10)) INTO sampled;
            per_block := sampled::numeric / least(l.nblocks, 10);
        END IF;
        step := greatest(1, (p_batch_rows / greatest(1.0, per_block))::bigint);
        part := l.relid;
        blocks := l.nblocks;
        FOR from_block IN SELECT pg_catalog.generate_series(0::bigint, l.nblocks - 1, step) LOOP
            to_block := least(from_block + step, l.nblocks);
            RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;

-- One batch: the rows of partition p_part in blocks [p_from, p_to) that need pricing. Run by
-- llm_cost._backfill_step (as the table's owner, with the cost trigger pricing each row as an
-- INSERT).
CREATE FUNCTION llm_cost._backfill_chunk(p_table regclass, p_part oid, p_from bigint, p_to bigint,
                                         OUT rows bigint, OUT unpriced bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
BEGIN
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked by llm_cost', p_table
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call llm_cost.track() on it first.';
    END IF;
    EXECUTE format(
        'WITH u AS (UPDATE %1$s s SET %2$I = s.%2$I WHERE s.tableoid = %3$s::pg_catalog.oid '
        'AND s.ctid >= ''(%4$s,0)''::pg_catalog.tid AND s.ctid < ''(%5$s,0)''::pg_catalog.tid AND %6$s RETURNING %7$s AS unpriced) '
        'SELECT count(*), count(*) FILTER (WHERE unpriced) FROM u',
        p_table, t.cost_column, p_part, p_from, p_to,
        CASE WHEN t.cost_source_column IS NOT NULL THEN format('s.%I IS NULL', t.cost_source_column)
             ELSE format('s.%I IS NULL', t.cost_column) END,
        CASE WHEN t.cost_source_column IS NOT NULL THEN format('s.%I = ''unpriced''', t.cost_source_column)
             ELSE format('s.%I IS NULL', t.cost_column) END)
    INTO rows, unpriced;
END $$;

-- Every batch in this transaction (track(..., backfill => true)); progress as NOTICEs when asked.
CREATE FUNCTION llm_cost._backfill_all(p_table regclass, p_batch_rows integer, p_progress boolean)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b record;
    j jsonb;
    n bigint := 0;
    u bigint := 0;
BEGIN
    PERFORM llm_cost._backfill_check(p_table, p_batch_rows);
    FOR b IN SELECT * FROM llm_cost._backfill_plan(p_table, p_batch_rows) LOOP
        j := llm_cost._as_table_owner('backfill', p_table::oid,
                 pg_catalog.jsonb_build_object('part', b.part, 'from', b.from_block, 'to', b.to_block));
        n := n + (j ->> 'rows')::bigint;
        u := u + (j ->> 'unpriced')::bigint;
        IF p_progress THEN
            RAISE NOTICE 'llm_cost.backfill %: % rows priced (% unpriced), block % of %', p_table, n, u, b.to_block, b.blocks;
        END IF;
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('rows', n, 'unpriced', u);
END $$;

-- The checks both forms make before any work: the table is tracked and the caller has its
-- owner's rights.
CREATE FUNCTION llm_cost._backfill_check(p_table regclass, p_batch_rows integer) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_table IS NULL THEN
        RAISE EXCEPTION 'llm_cost.backfill: log_table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_batch_rows IS NULL OR p_batch_rows < 1 THEN
        RAISE EXCEPTION 'llm_cost.backfill: batch_rows must be at least 1 (got %)', p_batch_rows
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM llm_cost.tracked_tables t WHERE t.log_table = p_table) THEN
        RAISE EXCEPTION 'table % is not tracked by llm_cost', p_table
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call llm_cost.track() on it first.';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = p_table), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to backfill it', p_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (SELECT d.method FROM llm_cost._citus_distribution(p_table) d) IS NOT NULL THEN
        RAISE EXCEPTION 'backfill of the Citus distributed table % is not supported', p_table
              USING ERRCODE = 'feature_not_supported',
                    HINT = 'Price the history before create_distributed_table() (track(..., backfill => true) or CALL llm_cost.backfill()), then distribute.';
    END IF;
    IF (SELECT t.cost_source_column FROM llm_cost.tracked_tables t WHERE t.log_table = p_table) IS NULL THEN
        -- Without one, a row left unpriced cannot be told from one never priced (it would be
        -- counted in unpriced_models again by every run).
        RAISE EXCEPTION 'table % has no cost_source column: backfill needs one to know which rows it has priced', p_table
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = format('SELECT llm_cost.track(%L, ..., cost_source_column => ''cost_source'') adds one (with your other arguments).', p_table::text);
    END IF;
END $$;

-- A table's name as llm_cost writes it in messages: schema-qualified, whatever the caller's path.
CREATE FUNCTION llm_cost._qualified_name(p_table regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT p_table::text $$;

-- Prices the rows a tracked table held before track(), in batches of about batch_rows rows,
-- committing after each one (CALL it outside a transaction block; inside one, or to price in
-- one transaction, use track(..., backfill => true)). Safe to run again: it picks up the rows
-- still unpriced by it. No SET clause (a procedure that commits cannot have one): every name,
-- type and operator below is schema-qualified.
CREATE PROCEDURE llm_cost.backfill(log_table regclass, batch_rows integer DEFAULT 10000)
LANGUAGE plpgsql AS $$
DECLARE
    b record;
    j pg_catalog.jsonb;
    n pg_catalog.int8 := 0;
    u pg_catalog.int8 := 0;
    shown pg_catalog.text;
BEGIN
    PERFORM llm_cost._backfill_check(log_table, batch_rows);
    shown := llm_cost._qualified_name(log_table);
    FOR b IN SELECT p.part, p.from_block, p.to_block, p.blocks FROM llm_cost._backfill_plan(log_table, batch_rows) p LOOP
        j := llm_cost._as_table_owner('backfill', log_table::pg_catalog.oid,
                 pg_catalog.jsonb_build_object('part', b.part, 'from', b.from_block, 'to', b.to_block));
        n := n OPERATOR(pg_catalog.+) (j OPERATOR(pg_catalog.->>) 'rows')::pg_catalog.int8;
        u := u OPERATOR(pg_catalog.+) (j OPERATOR(pg_catalog.->>) 'unpriced')::pg_catalog.int8;
        RAISE NOTICE 'llm_cost.backfill %: % rows priced (% unpriced), block % of %', shown, n, u, b.to_block, b.blocks;
        COMMIT;
    END LOOP;
END $$;
COMMENT ON PROCEDURE llm_cost.backfill(regclass, integer) IS
'Prices the rows a tracked table held before track(), at each row''s event time, in batches of about batch_rows rows, committing after each (progress as NOTICEs). A stored cost (not NULL, not the column default) is kept as provided; rows without a price are stored unpriced and listed in llm_cost.unpriced_models. Rollups follow. CALL it outside a transaction block; run it again to resume.';
