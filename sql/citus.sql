-- Citus (README "Scaling out with Citus"). llm_cost does not depend on Citus: these helpers read
-- its metadata only where the citus extension is installed, and answer NULL everywhere else.
--
-- On Citus the triggers of a distributed table fire on its shards, on the workers, where
-- llm_cost's registry (tracked_tables, rollups) is empty: the cost trigger carries its mapping in
-- its arguments, and so does the rollup trigger of a distributed source (see
-- llm_cost._rollup_shard_args in sql/rollups.sql): every rollup's table of sums is distributed
-- on the source's distribution column and co-located with it, and a shard's trigger writes the
-- shard of sums next to it (src/features/rollups/defs.rs, shard_rows).

-- How Citus holds a table: method 'h' and its distribution column for a hash-distributed table,
-- 'n' for a reference table or a Citus local table (kind says which), NULL columns otherwise.
CREATE FUNCTION llm_cost._citus_distribution(p_rel regclass, OUT method text, OUT dist_col text, OUT kind text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_rel IS NULL OR pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT p.partmethod::text,
                    CASE WHEN p.partmethod = ''h'' THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) END,
                    CASE WHEN p.partmethod = ''h'' THEN ''distributed'' WHEN p.repmodel = ''t'' THEN ''reference'' ELSE ''local'' END
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
       INTO method, dist_col, kind USING p_rel;
END $$;

-- The distributed table whose shard p_rel is (a shard's name ends in _<shard id>), or NULL.
CREATE FUNCTION llm_cost._citus_shard_logical(p_rel regclass, OUT logical regclass, OUT shard bigint, OUT min_value text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id text;
BEGIN
    IF p_rel IS NULL OR pg_catalog.to_regclass('pg_catalog.pg_dist_shard') IS NULL THEN
        RETURN;
    END IF;
    id := substring((SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = p_rel) FROM '_([0-9]{1,18})$');
    IF id IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT s.logicalrelid, s.shardid, s.shardminvalue FROM pg_catalog.pg_dist_shard s WHERE s.shardid = $1'
       INTO logical, shard, min_value USING id::bigint;
    IF logical IS NOT NULL AND llm_cost._citus_shard_rel(logical, shard) IS DISTINCT FROM p_rel THEN
        logical := NULL; shard := NULL; min_value := NULL;
    END IF;
END $$;

-- The relation of shard p_shard of p_logical on this node, or NULL.
CREATE FUNCTION llm_cost._citus_shard_rel(p_logical regclass, p_shard bigint) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n text;
    nsp text := (SELECT quote_ident(x.nspname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace x ON x.oid = c.relnamespace
                  WHERE c.oid = p_logical);
BEGIN
    -- shard_name() qualifies the name only outside the public schema (quoted as identifiers).
    EXECUTE 'SELECT pg_catalog.shard_name($1, $2)' INTO n USING p_logical, p_shard;
    IF n IS NULL OR nsp IS NULL THEN
        RETURN NULL;
    END IF;
    IF left(n, length(nsp) + 1) <> nsp || '.' THEN
        n := nsp || '.' || n;
    END IF;
    RETURN pg_catalog.to_regclass(n);
END $$;

-- Whether this node is a Citus coordinator (with workers to ask).
CREATE FUNCTION llm_cost._citus_coordinator() RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    yes boolean;
BEGIN
    IF pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator() AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node WHERE groupid <> 0 AND isactive AND noderole = ''primary'')'
       INTO yes;
    RETURN coalesce(yes, false);
END $$;

-- The price catalog on every node: on a Citus coordinator with workers, providers, model_prices
-- and model_aliases become reference tables (a copy on every worker, kept by Citus; each node's
-- catalog triggers see the changes to its own copy). CREATE EXTENSION and ALTER EXTENSION UPDATE
-- call it; call it again after adding the first workers to a coordinator that had none. Anywhere
-- else it does nothing.
CREATE FUNCTION llm_cost.citus_setup() RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
    made text[] := '{}';
BEGIN
    IF NOT llm_cost._citus_coordinator() THEN
        RETURN 'not a Citus coordinator with workers: nothing to do';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'llm_cost.model_prices'::pg_catalog.regclass), 'USAGE') THEN
        RAISE EXCEPTION 'llm_cost.citus_setup: only the owner of the price catalog (the extension''s owner) may make it reference tables'
              USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The catalog tables have llm_cost's triggers, which must run on every copy.
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH t IN ARRAY ARRAY['llm_cost.providers', 'llm_cost.model_prices', 'llm_cost.model_aliases'] LOOP
        IF (SELECT d.kind FROM llm_cost._citus_distribution(t::pg_catalog.regclass) d) IS DISTINCT FROM 'reference' THEN
            EXECUTE 'SELECT pg_catalog.create_reference_table($1)' USING t::pg_catalog.regclass;
            made := made || t;
        END IF;
    END LOOP;
    RETURN CASE WHEN made = '{}' THEN 'the price catalog is on every node already'
                ELSE 'made reference tables (on every node): ' || pg_catalog.array_to_string(made, ', ') END;
END $$;
COMMENT ON FUNCTION llm_cost.citus_setup() IS '@omit
On a Citus coordinator with workers, makes the price catalog (providers, model_prices, model_aliases) reference tables, so every worker prices with it; CREATE EXTENSION and ALTER EXTENSION UPDATE call it. Elsewhere it does nothing.';
REVOKE ALL ON FUNCTION llm_cost.citus_setup() FROM PUBLIC;

-- Refuses (55000) what would be priced on workers that have no catalog: a distributed source
-- while the catalog is not on every node.
CREATE FUNCTION llm_cost._citus_require_catalog(p_source regclass, p_what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (SELECT d.method FROM llm_cost._citus_distribution(p_source) d) = 'h'
       AND EXISTS (SELECT 1 FROM unnest(ARRAY['llm_cost.providers', 'llm_cost.model_prices', 'llm_cost.model_aliases']) t
                    WHERE (SELECT d.kind FROM llm_cost._citus_distribution(t::pg_catalog.regclass) d) IS DISTINCT FROM 'reference') THEN
        RAISE EXCEPTION 'llm_cost: cannot % %: its shards are priced on the workers, which do not have the price catalog', p_what, p_source
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Run SELECT llm_cost.citus_setup(); as a superuser on the coordinator (it makes the catalog reference tables).';
    END IF;
END $$;

-- The extension's own log on Citus: llm_cost.usage_events distributed by tenant_id (its key
-- becomes (tenant_id, id) and tenant_id NOT NULL, as Citus needs), its rollups co-located with
-- it (distribute_rollups). For the extension's owner, on a coordinator with workers.
CREATE FUNCTION llm_cost.distribute_usage_events(shard_count integer DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing bigint;
BEGIN
    IF NOT llm_cost._citus_coordinator() THEN
        RAISE EXCEPTION 'llm_cost.distribute_usage_events: this is not a Citus coordinator with workers'
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'llm_cost.usage_events'::pg_catalog.regclass), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table llm_cost.usage_events (the extension''s owner) to distribute it'
              USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (SELECT d.method FROM llm_cost._citus_distribution('llm_cost.usage_events'::pg_catalog.regclass) d) = 'h' THEN
        RETURN 'llm_cost.usage_events is distributed already';
    END IF;
    IF shard_count IS NOT NULL AND (shard_count < 1 OR shard_count > 64000) THEN
        RAISE EXCEPTION 'llm_cost.distribute_usage_events: shard_count must be between 1 and 64000, not %', shard_count
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM llm_cost.citus_setup();
    EXECUTE 'SELECT pg_catalog.count(*) FROM llm_cost.usage_events WHERE tenant_id IS NULL' INTO missing;
    IF missing > 0 THEN
        RAISE EXCEPTION 'llm_cost.distribute_usage_events: % rows of llm_cost.usage_events have no tenant_id, the distribution column', missing
              USING ERRCODE = 'not_null_violation',
                    HINT = 'Give them one (UPDATE llm_cost.usage_events SET tenant_id = ... WHERE tenant_id IS NULL) first.';
    END IF;
    ALTER TABLE llm_cost.usage_events ALTER COLUMN tenant_id SET NOT NULL;
    ALTER TABLE llm_cost.usage_events DROP CONSTRAINT usage_events_pkey,
        ADD CONSTRAINT usage_events_pkey PRIMARY KEY (tenant_id, id);
    -- Its triggers (cost, rollups, unpriced rows) go to the shards. The rows there now are
    -- priced, summed and counted already: Citus moves them into the shards with the triggers
    -- off (their sums follow with distribute_rollups below), then they are on again.
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    ALTER TABLE llm_cost.usage_events DISABLE TRIGGER USER;
    IF shard_count IS NULL THEN
        EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2)' USING 'llm_cost.usage_events'::pg_catalog.regclass, 'tenant_id';
    ELSE
        EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2, shard_count => $3)'
          USING 'llm_cost.usage_events'::pg_catalog.regclass, 'tenant_id', shard_count;
    END IF;
    PERFORM llm_cost.distribute_rollups('llm_cost.usage_events'::pg_catalog.regclass);
    ALTER TABLE llm_cost.usage_events ENABLE TRIGGER USER;
    RETURN 'llm_cost.usage_events distributed by tenant_id, with its rollups ('
           || (SELECT pg_catalog.string_agg(r.rollup::text, ', ' ORDER BY r.id) FROM llm_cost.rollups r
                WHERE r.source = 'llm_cost.usage_events'::pg_catalog.regclass) || ')';
END $$;
COMMENT ON FUNCTION llm_cost.distribute_usage_events(integer) IS '@omit
On a Citus coordinator with workers: distributes llm_cost.usage_events by tenant_id (tenant_id becomes NOT NULL and the primary key (tenant_id, id)) with its rollups co-located. For the extension''s owner.';
REVOKE ALL ON FUNCTION llm_cost.distribute_usage_events(integer) FROM PUBLIC;
