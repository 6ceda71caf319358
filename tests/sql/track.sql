-- track(): an application's own table, its mapping checked at once, with a clear error naming
-- the column and what it must be. (Moved from the #[pg_test]s of src/features/usage.rs.)
CREATE TABLE public.t_bad (id int, model text, input_tokens int, output_tokens int,
                           tokens_total int GENERATED ALWAYS AS (input_tokens + output_tokens) STORED,
                           price numeric(10,2), fcost float8, created_at timestamptz, cost_usd numeric, name_int int);
SELECT llm_cost.track('public.t_bad', model_column => 'nope');
SELECT llm_cost.track('public.t_bad', model_column => 'name_int');
SELECT llm_cost.track('public.t_bad', output_tokens_column => 'tokens_total');
SELECT llm_cost.track('public.t_bad', cost_column => 'price');
SELECT llm_cost.track('public.t_bad', cost_column => 'fcost');
SELECT llm_cost.track('public.t_bad', cost_column => 'missing_cost');
SELECT count(*) FROM llm_cost.tracked_tables WHERE log_table = 'public.t_bad'::regclass;
-- A good mapping works; untrack() takes the triggers away and leaves the rows as they are.
SELECT llm_cost.track('public.t_bad') IS NOT NULL AS tracked;
INSERT INTO public.t_bad (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1000000, 100000);
SELECT model, cost_usd FROM public.t_bad;
SELECT llm_cost.untrack('public.t_bad');
INSERT INTO public.t_bad (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1, 1);
SELECT count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_after_untrack FROM public.t_bad;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'public.t_bad'::regclass;

-- Names with quotes, spaces and SQL in them work and inject nothing.
CREATE SCHEMA "odd ""schema""";
CREATE TABLE "odd ""schema"""."log; DROP TABLE llm_cost.model_prices; --" (
    "the model'); DROP TABLE x; --" text, "in ""tok""" bigint, "out tok" bigint, "cost $" numeric, "when" timestamptz DEFAULT now());
SELECT llm_cost.track('"odd ""schema"""."log; DROP TABLE llm_cost.model_prices; --"',
                       model_column => 'the model''); DROP TABLE x; --', input_tokens_column => 'in "tok"',
                       output_tokens_column => 'out tok', cost_column => 'cost $', time_column => 'when') IS NOT NULL AS tracked;
INSERT INTO "odd ""schema"""."log; DROP TABLE llm_cost.model_prices; --" VALUES ('gpt-4o', 1000000, 0);
SELECT "cost $" FROM "odd ""schema"""."log; DROP TABLE llm_cost.model_prices; --";
SELECT count(*) > 2000 AS shipped_prices_intact FROM llm_cost.model_prices WHERE origin = 'llm_cost';

-- A NOT NULL cost column with a default (an application's schema, tests/data/llm_cost_events.sql):
-- an unknown model gets the default and is still counted as unpriced; an agent's own cost is kept;
-- an UPDATE re-estimates the estimate and keeps the agent's cost.
\i tests/data/llm_cost_events.sql
SELECT llm_cost.track('llm_cost_events', cache_read_tokens_column => 'cache_read_tokens',
                       cache_write_tokens_column => 'cache_write_tokens', cost_column => 'estimated_cost_usd',
                       provider_column => 'provider') IS NOT NULL AS tracked;
INSERT INTO llm_cost_events (repo, task_type, model, provider, sdk, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, estimated_cost_usd)
VALUES ('r', 'review', 'claude-sonnet-4-5', '', 'ai', 1000, 500, 20000, 4000, DEFAULT),
       ('r', 'review', 'claude-sonnet-4-5', 'anthropic', 'agent', 1000, 500, 0, 0, 0.12345678),
       ('r', 'review', 'mystery', 'x', 'ai', 1000, 500, 0, 0, DEFAULT);
SELECT model, provider, sdk, estimated_cost_usd FROM llm_cost_events ORDER BY id;
SELECT model, rows FROM llm_cost.unpriced_models WHERE model = 'mystery';
UPDATE llm_cost_events SET output_tokens = 1500;
SELECT model, sdk, estimated_cost_usd FROM llm_cost_events ORDER BY id;

-- Dropping a tracked table leaves nothing behind in llm_cost.
CREATE TABLE public.t_drop (model text, input_tokens int, output_tokens int, created_at timestamptz, cost_usd numeric);
SELECT llm_cost.track('public.t_drop') IS NOT NULL AS tracked;
INSERT INTO public.t_drop VALUES ('nope-model', 1, 1);
DROP TABLE public.t_drop;
SELECT count(*) AS registry_rows FROM llm_cost.tracked_tables WHERE log_table::text = 't_drop';
SELECT count(*) AS unpriced_rows FROM llm_cost.unpriced_stats WHERE model = 'nope-model';

-- The cost trigger is a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger; attached otherwise, it
-- refuses the statement with 39P01.
CREATE TABLE public.t_misuse (model text, input_tokens int, output_tokens int, cost_usd numeric);
CREATE TRIGGER wrong AFTER INSERT ON public.t_misuse FOR EACH ROW EXECUTE FUNCTION llm_cost.usage_cost_trigger();
INSERT INTO public.t_misuse VALUES ('gpt-4o', 1, 1);

-- Columns whose names say what they hold but that the mapping leaves out are named (a NOTICE
-- with the argument that maps each, and "not mapped" in the sentence), never guessed: the
-- price is the same as without them. Wrongly typed ones (text) are not named.
CREATE TABLE public."Bot Log" ("Model" text, input_tokens int, output_tokens int, cache_read_input_tokens bigint,
                               cache_creation_input_tokens int, cached_tokens text, llm_provider varchar(20),
                               service_tier text, web_searches smallint, usage jsonb, cost_usd numeric,
                               created_at timestamptz DEFAULT now());
SELECT llm_cost.track('public."Bot Log"', model_column => 'Model');
INSERT INTO public."Bot Log" ("Model", input_tokens, output_tokens, cache_read_input_tokens) VALUES ('gpt-4o', 1000, 100, 5000);
SELECT cost_usd, cost_usd = llm_cost.estimate_cost('gpt-4o', 1000, 100) AS priced_without_the_cache FROM public."Bot Log";
-- Mapped, a column is no longer named; only a provider left out: no word about caches.
SELECT llm_cost.track('public."Bot Log"', model_column => 'Model', cache_read_tokens_column => 'cache_read_input_tokens',
                      cache_write_tokens_column => 'cache_creation_input_tokens', service_tier_column => 'service_tier',
                      web_searches_column => 'web_searches', usage_column => 'usage');
-- All mapped: nothing said.
SELECT llm_cost.track('public."Bot Log"', model_column => 'Model', cache_read_tokens_column => 'cache_read_input_tokens',
                      cache_write_tokens_column => 'cache_creation_input_tokens', service_tier_column => 'service_tier',
                      web_searches_column => 'web_searches', usage_column => 'usage', provider_column => 'llm_provider');
-- A column the mapping uses for another role is not named: cache_read_input_tokens mapped as the
-- 1-hour cache writes is not offered as the cache reads (only usage, left out, is named).
SELECT llm_cost.track('public."Bot Log"', model_column => 'Model', cache_write_1h_tokens_column => 'cache_read_input_tokens',
                      cache_write_tokens_column => 'cache_creation_input_tokens', service_tier_column => 'service_tier',
                      web_searches_column => 'web_searches', provider_column => 'llm_provider');
SELECT llm_cost.untrack('public."Bot Log"');
DROP TABLE public."Bot Log";
