-- Budgets: every bad argument is refused with its SQLSTATE and a message that names it.
-- (Moved from the #[pg_test]s of src/features/budgets.rs.)
CREATE TABLE public.b_calls (at timestamptz NOT NULL DEFAULT now(), team text, seat int, model text, input_tokens int, output_tokens int, cost_usd numeric);
SELECT llm_cost.track('public.b_calls', time_column => 'at') IS NOT NULL AS tracked;
SELECT llm_cost.create_rollup('public.b_team_month', 'public.b_calls', 'month', '{team,seat}');
SELECT llm_cost.create_rollup('public.b_all_day', 'public.b_calls', 'day', '{}');
SELECT llm_cost.create_budget('cap', 'public.b_team_month', 10) IS NOT NULL AS created;

-- create_budget: a rollup, a positive finite limit, thresholds in (0, 10], filters on group columns.
SELECT llm_cost.create_budget('x', 'public.b_calls', 1);
SELECT llm_cost.create_budget('x', 'public.b_team_month', 0);
SELECT llm_cost.create_budget('x', 'public.b_team_month', -5);
SELECT llm_cost.create_budget('x', 'public.b_team_month', 'NaN');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 'Infinity');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1e15);
SELECT llm_cost.create_budget('x', 'public.b_team_month', NULL);
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, '{0,1}');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, '{0.5,10.5}');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, '{}');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, '{NaN}');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, NULL);
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, filter => '{"tenant_id": "a"}');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, filter => '[1]');
SELECT llm_cost.create_budget('x', 'public.b_team_month', 1, filter => '{"team": {"a": 1}}');
SELECT llm_cost.create_budget('x', 'public.b_all_day', 1, filter => '{"team": "a"}');
SELECT llm_cost.create_budget('cap', 'public.b_team_month', 1);
SELECT llm_cost.create_budget('', 'public.b_team_month', 1);
SELECT llm_cost.create_budget(NULL, 'public.b_team_month', 1);
SELECT llm_cost.create_budget('x', NULL, 1);

-- set_budget_limit and drop_budget: a budget that exists, a whole group, a positive limit.
SELECT llm_cost.set_budget_limit('nope', '{}', 1);
SELECT llm_cost.set_budget_limit('cap', '{"team": "a"}', 1);
SELECT llm_cost.set_budget_limit('cap', '{"team": "a", "seat": 1, "x": 2}', 1);
SELECT llm_cost.set_budget_limit('cap', '{"team": "a", "seat": 1}', 0);
SELECT llm_cost.set_budget_limit('cap', '{"team": "a", "seat": 1}', 'Infinity');
SELECT llm_cost.set_budget_limit('cap', NULL, 1);
SELECT llm_cost.drop_budget('nope');

-- check_budget: a budget, a whole group of the right types, a finite estimate of at least 0.
SELECT * FROM llm_cost.check_budget('nope', '{}');
SELECT * FROM llm_cost.check_budget('cap', '{"team": "a"}');
SELECT * FROM llm_cost.check_budget('cap', '{"team": "a", "seat": 1, "x": 1}');
SELECT * FROM llm_cost.check_budget('cap', '{"team": "a", "seat": "one"}');
SELECT * FROM llm_cost.check_budget('cap', '{"team": "a", "seat": 1}', -1);
SELECT * FROM llm_cost.check_budget('cap', '{"team": "a", "seat": 1}', 'NaN');
SELECT * FROM llm_cost.check_budget('cap', '{"team": "a", "seat": 1}', 'Infinity');
SELECT * FROM llm_cost.check_budget('cap', '[]');
SELECT * FROM llm_cost.check_budget(NULL, '{}');
SELECT * FROM llm_cost.check_budget('cap', NULL);
SELECT allowed, spent_usd, limit_usd, remaining_usd FROM llm_cost.check_budget('cap', '{"team": "a", "seat": 1}', 2);
-- The worker's pass, as the extension's owner: nothing crossed, nothing recorded.
SELECT llm_cost._budget_sweep();

-- The registry table itself keeps thresholds in range; thresholds are kept sorted and distinct.
INSERT INTO llm_cost.budgets (name, rollup, limit_usd, thresholds, created_at) VALUES ('y', 'public.b_team_month', 1, '{1,0.5}', '2026-01-01');
SELECT llm_cost.create_budget('t', 'public.b_team_month', 1, '{1, 0.8, 0.8, 0.25}') IS NOT NULL AS created;
SELECT name, limit_usd, thresholds FROM llm_cost.budgets ORDER BY name;

-- A role without the rollup owner's rights reaches none of it.
CREATE ROLE b_hostile NOLOGIN;
SET ROLE b_hostile;
SELECT llm_cost._budget_view('public.b_team_month');
SELECT llm_cost._budget_sweep();
SELECT llm_cost.create_budget('h', 'public.b_team_month', 1);
SELECT llm_cost.set_budget_limit('cap', '{"team": "a", "seat": 1}', 1);
SELECT llm_cost.drop_budget('cap');
SELECT llm_cost._budget_write('drop', jsonb_build_object('budget_id', (SELECT id FROM llm_cost.budgets WHERE name = 'cap')));
SELECT * FROM llm_cost.check_budget('cap', '{"team": "a", "seat": 1}');
DELETE FROM llm_cost.budgets;
RESET ROLE;
SELECT count(*) FROM llm_cost.budgets;
DROP ROLE b_hostile;
