-- Security: roles, grants, row-level security on usage rows and rollups.
--
-- Roles (cluster-wide, created if missing, kept by DROP EXTENSION):
--   llm_cost_writer  may INSERT usage rows and nothing else (cannot read them, cannot change prices);
--   llm_cost_reader  may read usage rows, rollups and reports, under row-level security;
--   llm_cost_admin   sees everything, manages prices, rollups and retention (owns the usage log);
--   llm_cost_auditor sees every row a reader may read, and writes nothing (the dashboard's
--                    "everything" view: its server never holds llm_cost_admin).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llm_cost_writer') THEN
        CREATE ROLE llm_cost_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llm_cost_reader') THEN
        CREATE ROLE llm_cost_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llm_cost_admin') THEN
        CREATE ROLE llm_cost_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llm_cost_auditor') THEN
        CREATE ROLE llm_cost_auditor NOLOGIN;
    END IF;
END $$;
GRANT llm_cost_reader TO llm_cost_admin;
GRANT llm_cost_reader TO llm_cost_auditor;

CREATE FUNCTION llm_cost.is_admin() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.pg_has_role(current_user, 'llm_cost_admin', 'MEMBER')
        OR pg_catalog.pg_has_role(current_user, 'llm_cost_auditor', 'MEMBER')
$$;
COMMENT ON FUNCTION llm_cost.is_admin() IS 'True when the current role is a member of llm_cost_admin or llm_cost_auditor (sees all rows; what it may change is up to its grants: an auditor has a reader''s).';

-- The usage log and its default rollups belong to llm_cost_admin, so admins manage them.
ALTER TABLE llm_cost.usage_events OWNER TO llm_cost_admin;
ALTER TABLE llm_cost.usage_daily_stripes OWNER TO llm_cost_admin;
ALTER TABLE llm_cost.usage_monthly_stripes OWNER TO llm_cost_admin;
ALTER VIEW llm_cost.usage_daily OWNER TO llm_cost_admin;
ALTER VIEW llm_cost.usage_monthly OWNER TO llm_cost_admin;

GRANT INSERT ON llm_cost.usage_events TO llm_cost_writer;
REVOKE SELECT ON llm_cost.usage_daily, llm_cost.usage_monthly FROM PUBLIC;
GRANT SELECT ON llm_cost.usage_events, llm_cost.usage_daily, llm_cost.usage_monthly,
                llm_cost.usage_daily_stripes, llm_cost.usage_monthly_stripes TO llm_cost_reader;
REVOKE SELECT ON llm_cost.spend_summary, llm_cost.spend_by_model, llm_cost.spend_by_feature, llm_cost.top_users,
                 llm_cost.daily_trend, llm_cost.user_stats, llm_cost.feature_stats FROM PUBLIC;
GRANT SELECT ON llm_cost.spend_summary, llm_cost.spend_by_model, llm_cost.spend_by_feature, llm_cost.top_users,
                llm_cost.daily_trend, llm_cost.user_stats, llm_cost.feature_stats TO llm_cost_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON llm_cost.model_prices, llm_cost.model_aliases, llm_cost.providers TO llm_cost_admin;
GRANT USAGE ON SEQUENCE llm_cost.model_prices_id_seq TO llm_cost_admin;
GRANT EXECUTE ON FUNCTION llm_cost.import_prices(jsonb, text, timestamptz, boolean) TO llm_cost_admin;

-- Reports run with the reader's rights, so row-level security applies through them.
ALTER VIEW llm_cost.spend_summary SET (security_invoker = true);
ALTER VIEW llm_cost.spend_by_model SET (security_invoker = true);
ALTER VIEW llm_cost.spend_by_feature SET (security_invoker = true);
ALTER VIEW llm_cost.top_users SET (security_invoker = true);
ALTER VIEW llm_cost.daily_trend SET (security_invoker = true);
ALTER VIEW llm_cost.user_stats SET (security_invoker = true);
ALTER VIEW llm_cost.feature_stats SET (security_invoker = true);

CREATE TABLE llm_cost.row_security (
    rel          regclass    PRIMARY KEY,
    target       regclass    NOT NULL,
    owner_column text        NOT NULL,
    enabled_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE llm_cost.row_security IS 'Relations whose rows are visible only to their owner (owner_column = llm_cost.current_principal()) and to admins. For a rollup, target is its table of partial sums.';
-- Everybody may read it; only enable_row_security() and disable_row_security() write it.
GRANT SELECT ON llm_cost.row_security TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('llm_cost.row_security', 'WHERE rel NOT IN (''llm_cost.usage_events''::regclass, ''llm_cost.usage_daily''::regclass, ''llm_cost.usage_monthly''::regclass)');

CREATE FUNCTION llm_cost.enable_row_security(rel regclass, owner_column text) RETURNS llm_cost.row_security
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    target regclass := rel;
    kind "char";
    r llm_cost.rollups;
    result llm_cost.row_security;
BEGIN
    IF rel IS NULL OR owner_column IS NULL THEN
        RAISE EXCEPTION 'llm_cost.enable_row_security: rel and owner_column must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO r FROM llm_cost.rollups WHERE rollups.rollup = rel;
    IF FOUND THEN
        target := r.stripes;   -- a rollup view: the policies go on its partial sums
    END IF;
    SELECT relkind INTO kind FROM pg_catalog.pg_class WHERE oid = target;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is neither a table nor an llm_cost rollup', rel USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = target), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % to change its row security', rel USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = target AND attname = owner_column
                                                             AND attnum > 0 AND NOT attisdropped) THEN
        RAISE EXCEPTION 'column "%" does not exist in %', owner_column, rel USING ERRCODE = 'undefined_column';
    END IF;
    IF EXISTS (SELECT 1 FROM llm_cost.row_security s WHERE s.rel = enable_row_security.rel) THEN
        RAISE NOTICE 'row security was already enabled on %; its policies are rewritten', rel;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = target AND polname = 'llm_cost_owner_read') THEN
        EXECUTE format('DROP POLICY llm_cost_owner_read ON %s', target);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = target AND polname = 'llm_cost_admin_all') THEN
        EXECUTE format('DROP POLICY llm_cost_admin_all ON %s', target);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = target AND polname = 'llm_cost_insert') THEN
        EXECUTE format('DROP POLICY llm_cost_insert ON %s', target);
    END IF;
    -- Owners read their own rows; rows without an owner (platform-wide totals) only admins.
    EXECUTE format('CREATE POLICY llm_cost_owner_read ON %s FOR SELECT USING (%I::text = llm_cost.current_principal())',
                   target, owner_column);
    EXECUTE format('CREATE POLICY llm_cost_admin_all ON %s FOR ALL USING (llm_cost.is_admin()) WITH CHECK (llm_cost.is_admin())', target);
    -- Whoever may INSERT (writers log calls on behalf of any user) still may.
    EXECUTE format('CREATE POLICY llm_cost_insert ON %s FOR INSERT WITH CHECK (true)', target);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    IF target <> rel THEN
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', rel);
    END IF;
    result := pg_catalog.jsonb_populate_record(NULL::llm_cost.row_security, llm_cost._registry_put('row_security',
        pg_catalog.jsonb_build_object('rel', rel::oid, 'target', target::oid, 'owner_column', owner_column)));
    RETURN result;
END $$;
COMMENT ON FUNCTION llm_cost.enable_row_security(regclass, text) IS
'Row-level security on a usage table or rollup: a reader sees the rows whose owner_column equals llm_cost.current_principal(); members of llm_cost_admin see all; rows with a NULL owner are for admins only. Calling it again rewrites the policies.';

CREATE FUNCTION llm_cost.disable_row_security(rel regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s llm_cost.row_security;
BEGIN
    SELECT * INTO s FROM llm_cost.row_security WHERE row_security.rel = disable_row_security.rel;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = s.target), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % to change its row security', rel USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = s.target AND polname = 'llm_cost_owner_read') THEN
        EXECUTE format('DROP POLICY llm_cost_owner_read ON %s', s.target);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = s.target AND polname = 'llm_cost_admin_all') THEN
        EXECUTE format('DROP POLICY llm_cost_admin_all ON %s', s.target);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = s.target AND polname = 'llm_cost_insert') THEN
        EXECUTE format('DROP POLICY llm_cost_insert ON %s', s.target);
    END IF;
    EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', s.target);
    PERFORM llm_cost._registry_delete('row_security', rel::oid);
    RETURN true;
END $$;
COMMENT ON FUNCTION llm_cost.disable_row_security(regclass) IS 'Removes the llm_cost policies of a table or rollup. Returns false if there were none.';

-- Who may see what llm_cost recorded about one group of a rollup (its budget, an alert, an
-- anomaly): admins, the rollup's owner (a member of the role owning its table of sums), and whoever
-- may read the rollup, under its row security: then the group must name the owner column, with the
-- reader as its value (a group of many owners' rows is not theirs to see). The policies of
-- budget_limits, budget_alerts and anomaly_alerts all ask this.
CREATE FUNCTION llm_cost._rollup_group_visible(p_rollup regclass, p_group jsonb) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT llm_cost.is_admin() OR EXISTS (
        SELECT 1 FROM llm_cost.rollups r
         WHERE r.rollup = p_rollup
           AND (pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = r.stripes), 'USAGE')
                OR (pg_catalog.has_table_privilege(current_user, r.rollup, 'SELECT')
                    AND (NOT EXISTS (SELECT 1 FROM llm_cost.row_security s WHERE s.rel = r.rollup)
                         OR EXISTS (SELECT 1 FROM llm_cost.row_security s
                                     WHERE s.rel = r.rollup AND p_group ->> s.owner_column = llm_cost.current_principal())))))
$$;
COMMENT ON FUNCTION llm_cost._rollup_group_visible(regclass, jsonb) IS '@omit
Whether the current role may see what llm_cost recorded about this group of the rollup: admins, the rollup''s owner, readers of the rollup under its row security (the group names its owner column).';

-- Safe by default: the shipped log and rollups are private to their user.
SELECT llm_cost.enable_row_security('llm_cost.usage_events', 'user_id');
SELECT llm_cost.enable_row_security('llm_cost.usage_daily', 'user_id');
SELECT llm_cost.enable_row_security('llm_cost.usage_monthly', 'user_id');

-- GraphQL layers: internal helpers and management functions stay out of the generated API
-- (PostGraphile's @omit smart tag; they remain plain SQL functions).
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn, pg_catalog.obj_description(p.oid, 'pg_proc') AS d
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'llm_cost'::regnamespace AND p.prokind = 'f'
                AND p.prorettype <> 'trigger'::regtype AND p.prorettype <> 'event_trigger'::regtype
                AND (p.proname LIKE '\_%' OR p.proname IN ('track', 'untrack', 'create_rollup', 'drop_rollup', 'rebuild_rollup',
                     'reprice', 'fold_rollup', 'set_retention', 'drop_retention', 'run_retention', 'enable_row_security', 'disable_row_security',
                     'import_prices', 'distribute_rollups'))
                AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') NOT LIKE '@omit%'
    LOOP
        EXECUTE format('COMMENT ON FUNCTION %s IS %L', f.fn, E'@omit\n' || coalesce(f.d, ''));
    END LOOP;
END $$;
