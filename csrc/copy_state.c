/*
 * llm_cost: read-only accessors for PostgreSQL's COPY FROM state (commands/copyfrom_internal.h,
 * PostgreSQL 14 and later). That struct is not in pgrx's bindings and its layout differs between
 * major versions, so it is read here, compiled against the server headers of the version being
 * built. Nothing here writes to the state. See src/copy.rs.
 */
#include "postgres.h"
#include "commands/copyfrom_internal.h"

/* The compiled WHERE clause of a COPY FROM (NULL before CopyFrom has initialised it). */
ExprState *
llm_cost_copy_qualexpr(void *cstate)
{
	return ((CopyFromState) cstate)->qualexpr;
}

/* The relation a COPY FROM loads. */
Relation
llm_cost_copy_rel(void *cstate)
{
	return ((CopyFromState) cstate)->rel;
}

/* The input line of the row being read (distinct for every row of one COPY). */
uint64
llm_cost_copy_lineno(void *cstate)
{
	return ((CopyFromState) cstate)->cur_lineno;
}
