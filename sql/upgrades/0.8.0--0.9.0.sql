-- llm_cost 0.8.0 -> 0.9.0: adoption. Application tables attach with their history and their
-- conventions: track(..., backfill => true) and CALL llm_cost.backfill() price the rows logged
-- before tracking; a NOT NULL or integer cost column gets a cost_source column that says
-- "unpriced" (an explicit $0 marked provided is kept); integer cost columns in a stated unit
-- (cost_unit => 'microcents', 'usd_micros', 'cents'); tables that keep only the provider's usage
-- object (token columns optional; an error response costs $0, a row without usage is unpriced,
-- neither is refused); providers normalised (priced_provider_column); an unqualified rollup
-- name goes where CREATE VIEW puts it; reports over any rollup (rollup_summary, spend_by,
-- spend_trend); track(), create_budget() and set_retention() answer with a sentence.
--
-- Behaviour changes: in a table with a cost_source column, a cost equal to the column default
-- is estimated unless the row says cost_source = 'provided'; llm_cost.unpriced_models lists the
-- rows still unpriced (reprice() takes the rows it prices off the list). Stored costs are not
-- touched.

ALTER TABLE llm_cost.tracked_tables
    ALTER COLUMN input_tokens_column DROP NOT NULL,
    ALTER COLUMN output_tokens_column DROP NOT NULL,
    ADD COLUMN cost_unit text CHECK (cost_unit IN ('cents', 'usd_micros', 'microcents')),
    ADD COLUMN priced_provider_column text;
COMMENT ON COLUMN llm_cost.tracked_tables.input_tokens_column IS 'Column with uncached input tokens (NULL: the table keeps only the usage object).';
COMMENT ON COLUMN llm_cost.tracked_tables.output_tokens_column IS 'Column with output tokens (NULL: the table keeps only the usage object).';
COMMENT ON COLUMN llm_cost.tracked_tables.cost_unit IS 'Unit of an integer cost column: cents, usd_micros or microcents (the trigger rounds half up to a whole unit); NULL: a numeric column in USD.';
COMMENT ON COLUMN llm_cost.tracked_tables.priced_provider_column IS 'text column the trigger fills with the provider the row was priced at, as the providers table names it (Anthropic, claude: anthropic), or NULL: rollups group by it where they group by the provider column.';
COMMENT ON COLUMN llm_cost.tracked_tables.cost_column IS 'Column the trigger fills with the cost: numeric in USD, or an integer in cost_unit.';
COMMENT ON COLUMN llm_cost.tracked_tables.cost_source_column IS 'Column that says how each cost came to be: estimated, provided or unpriced (cost_source by default; track() adds one to a table whose cost column is NOT NULL or integer).';

ALTER TABLE llm_cost.usage_events ADD COLUMN priced_provider text;
COMMENT ON COLUMN llm_cost.usage_events.priced_provider IS 'Filled by llm_cost: the provider the call was priced at, as the providers table names it (anthropic for Anthropic or claude); provider keeps what the application sent. Rollups grouping by provider group by it.';

-- @generated

-- The extension's own log table maps priced_provider from now on; usage_daily groups by provider
-- and so reads it. Rows logged before get the provider they were summed under (their rollup
-- sums stay where they are; new rows carry the normalised provider), without firing the
-- triggers (nothing about their cost or their sums changes).
ALTER TABLE llm_cost.usage_events DISABLE TRIGGER USER;
UPDATE llm_cost.usage_events SET priced_provider = provider WHERE provider IS NOT NULL;
ALTER TABLE llm_cost.usage_events ENABLE TRIGGER USER;
-- Its trigger gets the arguments of 0.9.0 (the priced provider).
SELECT llm_cost.track('llm_cost.usage_events',
                      cache_read_tokens_column  => 'cache_read_tokens',
                      cache_write_tokens_column => 'cache_write_tokens',
                      time_column               => 'occurred_at',
                      provider_column           => 'provider',
                      service_tier_column       => 'service_tier',
                      cache_write_1h_tokens_column => 'cache_write_1h_tokens',
                      priced_model_column       => 'priced_model',
                      usage_column              => 'usage',
                      priced_provider_column    => 'priced_provider');
