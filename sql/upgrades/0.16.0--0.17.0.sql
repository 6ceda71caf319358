-- llm_cost 0.16.0 -> 0.17.0: llm_cost.fold_rollup() and the background worker fold the rows of sums of
-- closed periods into one row per group (sums unchanged; llm_cost.fold_rollups turns the
-- worker's part off); rebuild_rollup and fold_rollup of one rollup take turns. track() says which columns of the table look like token, provider,
-- service tier, web search or usage columns but are left out of the mapping (a NOTICE with the
-- arguments that map them, and "not mapped: ..." in the sentence it returns): their values do
-- not change the price, which was silent before. Nothing else changes.

-- @generated
