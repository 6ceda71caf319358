-- Cost histograms (0.11.0; aggregate state internal since 0.12.0): llm_cost.cost_histogram_sum()
-- adds int8[] histograms of [bucket, count, ...] pairs; counts that cancel out vanish, NULL and
-- no rows give {}. The same sums in a parallel plan (partial states serialised between
-- processes) as in one process.
SELECT llm_cost.cost_histogram_sum(h) FROM (VALUES ('{40,2,300,1}'::bigint[]), ('{12,1,40,-1}'), (NULL), ('{1999,3}'), ('{300,-1,5,7}')) v(h);
SELECT llm_cost.cost_histogram_sum(h) FROM (VALUES ('{}'::bigint[])) v(h) WHERE false;
SELECT g, llm_cost.cost_histogram_sum(h), llm_cost.histogram_requests(llm_cost.cost_histogram_sum(h))
  FROM (VALUES (1, '{100,1}'::bigint[]), (2, '{100,2}'), (1, '{90,1,100,1}'), (2, NULL)) v(g, h) GROUP BY g ORDER BY g;

-- 200,000 rows, 1,000 groups: the parallel plan's sums equal the serial plan's.
CREATE TABLE hist_rows AS
SELECT i % 1000 AS g, ARRAY[(i * 7919) % 600 + 100, 1 + i % 3]::bigint[] AS h FROM generate_series(1, 200000) i;
ANALYZE hist_rows;
SET max_parallel_workers_per_gather = 0;
CREATE TABLE serial_sums AS SELECT g, llm_cost.cost_histogram_sum(h) AS s FROM hist_rows GROUP BY g;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF) SELECT g, llm_cost.cost_histogram_sum(h) FROM hist_rows GROUP BY g;
SELECT count(*) AS groups, count(*) FILTER (WHERE p.s = s.s) AS equal,
       sum(llm_cost.histogram_requests(p.s)) AS requests, (SELECT sum(1 + i % 3) FROM generate_series(1, 200000) i) AS expected
  FROM (SELECT g, llm_cost.cost_histogram_sum(h) AS s FROM hist_rows GROUP BY g) p JOIN serial_sums s USING (g);
SELECT llm_cost.cost_histogram_sum(h) = (SELECT llm_cost.cost_histogram_sum(s) FROM serial_sums) AS total_equal FROM hist_rows;
RESET ALL;

-- Not histograms: an odd length, a bucket past the largest (1999), a NULL element, a count sum
-- past int8.
SELECT llm_cost.cost_histogram_sum(h) FROM (VALUES ('{1,2,3}'::bigint[])) v(h);
SELECT llm_cost.cost_histogram_sum(h) FROM (VALUES ('{2000,1}'::bigint[])) v(h);
SELECT llm_cost.cost_histogram_sum(h) FROM (VALUES ('{-1,1}'::bigint[])) v(h);
SELECT llm_cost.cost_histogram_sum(h) FROM (VALUES ('{5,NULL}'::bigint[])) v(h);
SELECT llm_cost.cost_histogram_sum(h) FROM (VALUES ('{5,9223372036854775807}'::bigint[]), ('{5,1}')) v(h);
