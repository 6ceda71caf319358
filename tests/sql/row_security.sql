-- Row-level security: writers write and read nothing; readers see their own rows, rollups and
-- reports; admins see all. The principal comes from the API layer's request settings.
-- (Moved from the #[pg_test]s of src/features/security.rs.)

-- A writer inserts (priced and rolled up) but reads nothing and cannot change prices.
BEGIN;
SET LOCAL ROLE llm_cost_writer;
INSERT INTO llm_cost.usage_events (user_id, model, input_tokens, output_tokens) VALUES ('w', 'gpt-4o', 1000000, 0), ('w', 'unknown-w', 1, 1);
SAVEPOINT s;
SELECT count(*) FROM llm_cost.usage_events;
ROLLBACK TO s;
SELECT count(*) FROM llm_cost.usage_daily;
ROLLBACK TO s;
UPDATE llm_cost.model_prices SET input_usd_per_mtok = 0 WHERE origin = 'user';
ROLLBACK TO s;
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('x', 'y', 1);
ROLLBACK TO s;
-- The catalog is readable by all.
SELECT count(*) > 45 AS catalog_readable FROM llm_cost.model_prices;
RESET ROLE;
SELECT user_id, model, cost_usd FROM llm_cost.usage_daily WHERE user_id = 'w' ORDER BY model;
ROLLBACK;

INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens)
VALUES ('t', 'alice', 'gpt-4o', 1000000, 0), ('t', 'alice', 'gpt-4o', 1000000, 0),
       ('t', 'bob', 'claude-sonnet-4-5', 1000000, 0), ('t', NULL, 'gpt-4o', 1000000, 0);

-- A reader with no principal sees nothing; with one, its own rows, rollups and reports.
BEGIN;
SET LOCAL ROLE llm_cost_reader;
SELECT count(*) FROM llm_cost.usage_events;
SET LOCAL llm_cost.principal = 'alice';
SELECT DISTINCT user_id FROM llm_cost.usage_events;
SELECT user_id, cost_usd FROM llm_cost.usage_daily;
SELECT user_id, requests FROM llm_cost.usage_monthly;
SELECT cost_usd FROM llm_cost.spend_summary WHERE period = 'today';
-- PostgREST / Supabase claims win over the plain setting.
SET LOCAL request.jwt.claims = '{"sub": "bob", "role": "authenticated"}';
SELECT llm_cost.current_principal();
SELECT DISTINCT user_id FROM llm_cost.usage_events;
-- Malformed claims deny, quietly.
SET LOCAL request.jwt.claims = '{"sub": ';
SELECT llm_cost.current_principal();
SELECT count(*) FROM llm_cost.usage_events;
SET LOCAL request.jwt.claims = '';
-- A principal that tries SQL is only a name.
SET LOCAL llm_cost.principal = $$alice' OR '1'='1$$;
SELECT count(*) FROM llm_cost.usage_events;
-- PostGraphile (jwt.claims.*) and Hasura (hasura.user).
SET LOCAL llm_cost.principal = '';
SET LOCAL jwt.claims.user_id = 'alice';
SELECT count(*) FROM llm_cost.usage_events;
SET LOCAL jwt.claims.user_id = '';
SELECT set_config('hasura.user', '{"x-hasura-user-id": "bob", "x-hasura-role": "user"}', true) IS NOT NULL AS set;
SELECT count(*) FROM llm_cost.usage_events;
RESET ROLE;
-- Admins see everything, platform rows (NULL user) included, and may add prices.
SET LOCAL ROLE llm_cost_admin;
SELECT count(*) FROM llm_cost.usage_events;
SELECT count(*) FROM llm_cost.usage_daily WHERE user_id IS NULL;
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'admin-made', 1);
ROLLBACK;

-- enable_row_security on your own table: a column that exists, policies rewritten when called
-- again, disable_row_security says whether there was anything to remove.
CREATE TABLE public.sec_log (owner uuid, model text, input_tokens int, output_tokens int, created_at timestamptz DEFAULT now(), cost_usd numeric);
SELECT llm_cost.enable_row_security('public.sec_log', 'nobody');
SELECT llm_cost.enable_row_security('public.sec_log', 'owner') IS NOT NULL AS enabled;
SELECT llm_cost.enable_row_security('public.sec_log', 'owner') IS NOT NULL AS enabled_again;
SELECT polname, polcmd FROM pg_policy WHERE polrelid = 'public.sec_log'::regclass ORDER BY polname;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.sec_log'::regclass;
SELECT llm_cost.disable_row_security('public.sec_log');
SELECT llm_cost.disable_row_security('public.sec_log');
SELECT count(*) AS policies FROM pg_policy WHERE polrelid = 'public.sec_log'::regclass;
SELECT llm_cost.enable_row_security('llm_cost.spend_summary', 'period');
