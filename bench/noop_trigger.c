/*
 * The cheapest possible BEFORE ROW trigger: returns the row unchanged. The rollups benchmark
 * times COPY into a table carrying only this trigger, to show what any BEFORE ROW trigger costs
 * COPY (it switches COPY from batched to row-by-row inserts), whatever the trigger does.
 * Built by bench/bench.py with the server's headers; never part of the extension.
 */
#include "postgres.h"
#include "fmgr.h"
#include "commands/trigger.h"

PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(llm_cost_bench_noop_trigger);

Datum
llm_cost_bench_noop_trigger(PG_FUNCTION_ARGS)
{
    TriggerData *td = (TriggerData *) fcinfo->context;

    return PointerGetDatum(td->tg_trigtuple);
}
