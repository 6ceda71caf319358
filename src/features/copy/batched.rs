//! COPY FROM into a tracked table, priced without a row trigger (PostgreSQL 14+).
//!
//! Any BEFORE ROW trigger makes PostgreSQL's COPY insert row by row instead of in batches of
//! 1,000 (`copyfrom.c` decides that once per COPY from the trigger list). So for a COPY FROM
//! into a plain tracked table whose only BEFORE INSERT row trigger is llm_cost's, the
//! ProcessUtility hook here runs the COPY with:
//!
//! * `AND llm_cost._copy_row()` appended to its WHERE clause: COPY evaluates that clause on each
//!   row as read (defaults filled in, before constraints and before the row is buffered), with
//!   the row in its scan slot. `_copy_row` prices the row there, exactly as the cost trigger
//!   would (`usage::price_values`, the same code), writes the cost, cost_source and provider into
//!   the slot, adds the row to the statement's rollup sums, and returns true;
//! * the cost trigger `llm_cost_price`, and `llm_cost_rollup` when `_copy_row` feeds the rollups
//!   itself, switched off in the trigger list that COPY copies into its own `ResultRelInfo`. That
//!   list is the relation cache's, so it is swapped in the cache entry just for the few calls in
//!   which COPY copies it: it is swapped back as soon as COPY compiles its WHERE clause (the
//!   object access hook sees `_copy_row` being prepared), at the latest at the first row, and
//!   always when the statement ends or fails. Nothing but COPY's own set-up runs in that window.
//!
//! COPY then batches its inserts like on a table without triggers. The statement trigger
//! `llm_cost_unpriced` still runs at the end and writes the rollup sums and unknown models.
//! Everything the row trigger guarantees holds: the statement is accepted whole or rejected
//! whole (a row that fails pricing, a constraint or an index aborts it, and the aborted
//! (sub)transaction takes its sums along), unknown models are stored unpriced.
//!
//! Every step checks before it acts and otherwise leaves COPY to the row trigger: a relation
//! cache rebuild between swap and copy (COPY then has the real trigger list, and `_copy_row`
//! sees the cost trigger on in it and does nothing), other BEFORE row triggers, partitioned or
//! foreign tables, triggers disabled or set to fire in another replication role. The COPY state
//! is read through `csrc/copy_state.c` (compiled against the server's headers by build.rs).

use crate::pg::spi;
use pgrx::prelude::*;

use std::cell::{Cell, RefCell};
use std::ffi::{c_void, CStr};
use std::rc::Rc;

extern "C" {
    fn llm_cost_copy_qualexpr(cstate: *mut c_void) -> *mut pg_sys::ExprState;
    fn llm_cost_copy_rel(cstate: *mut c_void) -> pg_sys::Relation;
    fn llm_cost_copy_lineno(cstate: *mut c_void) -> u64;
}

static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;

/// Installs the hooks (from `_PG_init`, once per process).
pub fn install_hooks() {
    // SAFETY: hooks are set once per process in _PG_init, before any statement; the previous ones are kept and chained.
    unsafe {
        PREV_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
}

/// One COPY being run by the hook.
struct Armed {
    relid: pg_sys::Oid,
    /// The relation cache entry (a reference held until the statement ends).
    rel: pg_sys::Relation,
    /// `llm_cost._copy_row()`.
    func: pg_sys::Oid,
    cost_tgoid: pg_sys::Oid,
    /// The relation cache's trigger list, and the copy with our triggers off.
    original: *mut pg_sys::TriggerDesc,
    ours: *mut pg_sys::TriggerDesc,
    swapped: bool,
    restored: bool,
    spec: Rc<crate::features::pricing::usage::TableSpec>,
    relname: Rc<str>,
    /// The rollups `_copy_row` feeds (None: no rollups, or the rollup row trigger stays on).
    rollups: Option<crate::features::rollups::Defs>,
    /// Set at the first row: whether COPY runs with our triggers off (else `_copy_row` does
    /// nothing and the triggers do the work), COPY's state and per-row expression context.
    started: bool,
    active: bool,
    cstate: *mut c_void,
    econtext: *mut pg_sys::ExprContext,
    /// The input line of the last row priced (a second `_copy_row()` in the same WHERE clause
    /// must not price or count it again).
    lineno: Option<u64>,
    /// A writer's COPY FROM STDIN into a table with row-level security (see `rls_owner`): COPY's
    /// set-up runs as this table owner, and the session's user id and security context come
    /// back with the trigger list, before any row, default or trigger is evaluated.
    set_up_as: Option<pg_sys::Oid>,
    saved_user: Option<(pg_sys::Oid, i32)>,
}

thread_local! {
    static ARMED: RefCell<Vec<Armed>> = const { RefCell::new(Vec::new()) };
    /// Rows priced by `_copy_row` in this backend since it started.
    static ROWS: Cell<i64> = const { Cell::new(0) };
}

/// Rows this backend has priced in COPY FROM without the row trigger, since it started.
pub fn rows_priced() -> i64 {
    ROWS.with(|r| r.get())
}

unsafe fn next_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    match PREV_UTILITY {
        Some(prev) => prev(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
        None => pg_sys::standard_ProcessUtility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let stmt = (*pstmt).utilityStmt;
    let armed = if !stmt.is_null() && (*stmt).type_ == pg_sys::NodeTag::T_CopyStmt {
        arm(pstmt, stmt as *mut pg_sys::CopyStmt)
    } else {
        None
    };
    let Some((armed, copied)) = armed else {
        next_utility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        );
        return;
    };
    ARMED.with(|a| a.borrow_mut().push(armed));
    pgrx::PgTryBuilder::new(|| {
        // The swap, last: from here on, whatever happens, `disarm` puts the list back.
        let relid = ARMED.with(|a| {
            let mut a = a.borrow_mut();
            let top = a.last_mut()?;
            (*top.rel).trigdesc = top.ours;
            top.swapped = true;
            if let Some(owner) = top.set_up_as {
                let (mut user, mut sec) = (pg_sys::InvalidOid, 0i32);
                pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
                top.saved_user = Some((user, sec));
                pg_sys::SetUserIdAndSecContext(
                    owner,
                    sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                        | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
                );
            }
            Some(top.relid)
        });
        #[cfg(any(test, feature = "pg_test"))]
        if let (Some(relid), true) = (relid, tests::REBUILD_AFTER_SWAP.with(|r| r.get())) {
            // What an invalidation processed during COPY's set-up would do.
            pg_sys::RelationCacheInvalidateEntry(relid);
        }
        let _ = relid;
        next_utility(
            copied,
            query_string,
            false,
            context,
            params,
            query_env,
            dest,
            qc,
        )
    })
    .finally(|| disarm())
    .execute();
}

#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut c_void,
) {
    if let Some(prev) = PREV_OBJECT_ACCESS {
        prev(access, class_id, object_id, sub_id, arg);
    }
    if access == pg_sys::ObjectAccessType::OAT_FUNCTION_EXECUTE
        && class_id == pg_sys::ProcedureRelationId
    {
        // COPY is compiling its WHERE clause: it has copied the trigger list by now.
        let _ = ARMED.try_with(|a| {
            if let Ok(mut a) = a.try_borrow_mut() {
                if let Some(top) = a.last_mut() {
                    if top.func == object_id {
                        restore(top);
                    }
                }
            }
        });
    }
}

/// Puts the relation cache's trigger list back (once), and the session's user.
unsafe fn restore(a: &mut Armed) {
    if let Some((user, sec)) = a.saved_user.take() {
        pg_sys::SetUserIdAndSecContext(user, sec);
    }
    if a.restored {
        return;
    }
    a.restored = true;
    if !a.swapped {
        pg_sys::FreeTriggerDesc(a.ours);
    } else if (*a.rel).trigdesc == a.ours {
        (*a.rel).trigdesc = a.original;
        pg_sys::FreeTriggerDesc(a.ours);
    } else {
        // The entry was rebuilt meanwhile (it freed our copy and has a fresh list of its own).
        pg_sys::FreeTriggerDesc(a.original);
    }
}

fn disarm() {
    let _ = ARMED.try_with(|a| {
        if let Ok(mut a) = a.try_borrow_mut() {
            if let Some(mut top) = a.pop() {
                // SAFETY: the relation was opened by the COPY whose trigger list was swapped; its list is put back before it is closed.
                unsafe {
                    restore(&mut top);
                    pg_sys::RelationClose(top.rel);
                }
            }
        }
    });
}

const ROW_BEFORE_INSERT: i16 =
    (pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_INSERT) as i16;

fn is_after_row_insert(t: &pg_sys::Trigger) -> bool {
    let row_insert = (pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_INSERT) as i16;
    let timing = (pg_sys::TRIGGER_TYPE_BEFORE | pg_sys::TRIGGER_TYPE_INSTEAD) as i16;
    t.tgtype & row_insert == row_insert && t.tgtype & timing == 0
}

/// Whether a trigger fires in this session (its enabled state and session_replication_role).
fn fires(t: &pg_sys::Trigger) -> bool {
    // SAFETY: reads a GUC variable of this backend.
    let replica = unsafe { pg_sys::SessionReplicationRole }
        == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;
    match t.tgenabled as u8 {
        pg_sys::TRIGGER_FIRES_ON_ORIGIN => !replica,
        pg_sys::TRIGGER_FIRES_ALWAYS => true,
        pg_sys::TRIGGER_FIRES_ON_REPLICA => replica,
        _ => false,
    }
}

/// Whether `func` is `llm_cost.<name>`.
unsafe fn is_ours(func: pg_sys::Oid, name: &str) -> bool {
    let n = pg_sys::get_func_name(func);
    if n.is_null() || CStr::from_ptr(n).to_bytes() != name.as_bytes() {
        return false;
    }
    let ns = pg_sys::get_namespace_name(pg_sys::get_func_namespace(func));
    !ns.is_null() && CStr::from_ptr(ns).to_bytes() == b"llm_cost"
}

unsafe fn pstr(s: &str) -> *mut std::ffi::c_char {
    let c = std::ffi::CString::new(s).unwrap_or_default();
    pg_sys::pstrdup(c.as_ptr())
}

/// `llm_cost._copy_row` as a qualified name list.
unsafe fn copy_row_name() -> *mut pg_sys::List {
    let part = |s: &str| pg_sys::makeString(pstr(s)) as *mut c_void;
    pg_sys::lappend(
        pg_sys::lappend(std::ptr::null_mut(), part("llm_cost")),
        part("_copy_row"),
    )
}

unsafe fn trigger_args(t: &pg_sys::Trigger) -> Vec<String> {
    (0..t.tgnargs as usize)
        .map(|i| {
            CStr::from_ptr(*t.tgargs.add(i))
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Decides whether this COPY takes the path, and if so returns what to swap and the statement to
/// run instead (the relation named by schema, the WHERE clause extended).
unsafe fn arm(
    pstmt: *mut pg_sys::PlannedStmt,
    stmt: *mut pg_sys::CopyStmt,
) -> Option<(Armed, *mut pg_sys::PlannedStmt)> {
    let s = &*stmt;
    if !s.is_from
        || s.relation.is_null()
        || !s.query.is_null()
        || !crate::features::pricing::usage::BATCH_COPY.get()
        || !pg_sys::IsTransactionState()
    {
        return None;
    }
    // Where COPY FROM is refused anyway (a standby, a read-only transaction), let PostgreSQL say so.
    if pg_sys::RecoveryInProgress() || pg_sys::XactReadOnly {
        return None;
    }
    // The lock COPY FROM takes anyway (DoCopy opens the relation with it before anything else).
    let relid = pg_sys::RangeVarGetRelidExtended(
        s.relation,
        pg_sys::RowExclusiveLock as pg_sys::LOCKMODE,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    if relid == pg_sys::InvalidOid {
        return None;
    }
    // A Citus table: Citus routes COPY's rows to its shards, where the cost trigger prices them,
    // and refuses COPY FROM with a WHERE clause.
    if crate::pg::citus::is_citus_table(relid) {
        return None;
    }
    // Before the trigger list is read (this may query the catalog).
    let set_up_as = rls_owner(relid, s);
    let rel = pg_sys::RelationIdGetRelation(relid);
    if rel.is_null() {
        return None;
    }
    let armed = prepare(relid, rel).map(|mut a| {
        a.set_up_as = set_up_as;
        a
    });
    let Some(armed) = armed else {
        pg_sys::RelationClose(rel);
        return None;
    };
    // The statement to run: a copy, naming the relation by schema (it is the one locked and
    // prepared here whatever search_path does meanwhile), with `AND llm_cost._copy_row()`.
    let copied = pg_sys::copyObjectImpl(pstmt as *const c_void) as *mut pg_sys::PlannedStmt;
    let cs = (*copied).utilityStmt as *mut pg_sys::CopyStmt;
    let rv = (*cs).relation;
    (*rv).catalogname = std::ptr::null_mut();
    (*rv).schemaname = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
    (*rv).relname = pstr(&armed.relname);
    let call = pg_sys::makeFuncCall(
        copy_row_name(),
        std::ptr::null_mut(),
        pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        -1,
    ) as *mut pg_sys::Node;
    (*cs).whereClause = if (*cs).whereClause.is_null() {
        call
    } else {
        // The application's condition first: rows it filters out are never priced or counted.
        let both = pg_sys::lappend(
            pg_sys::lappend(std::ptr::null_mut(), (*cs).whereClause as *mut c_void),
            call as *mut c_void,
        );
        pg_sys::makeBoolExpr(pg_sys::BoolExprType::AND_EXPR, both, -1) as *mut pg_sys::Node
    };
    Some((armed, copied))
}

/// The checks, and the trigger list to swap in (swapped by `process_utility`).
unsafe fn prepare(relid: pg_sys::Oid, rel: pg_sys::Relation) -> Option<Armed> {
    if crate::pg::privilege::loading_dump(relid) {
        return None; // a restore: the row triggers keep the rows as dumped
    }
    if (*(*rel).rd_rel).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char {
        return None; // partitioned (rows are routed to partitions with triggers of their own), foreign, view
    }
    let desc = (*rel).trigdesc;
    if desc.is_null() {
        return None;
    }
    let all = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
    let named = |n: &[u8]| {
        all.iter()
            .position(|t| CStr::from_ptr(t.tgname).to_bytes() == n)
    };
    let cost_i = named(b"llm_cost_price")?;
    let cost = &all[cost_i];
    if cost.tgtype & ROW_BEFORE_INSERT != ROW_BEFORE_INSERT
        || !fires(cost)
        || !is_ours(cost.tgfoid, "usage_cost_trigger")
    {
        return None;
    }
    // Another BEFORE row trigger could change or skip rows (and keeps COPY row by row anyway).
    if all
        .iter()
        .enumerate()
        .any(|(i, t)| i != cost_i && t.tgtype & ROW_BEFORE_INSERT == ROW_BEFORE_INSERT)
    {
        return None;
    }
    let func = pg_sys::LookupFuncName(copy_row_name(), 0, std::ptr::null(), true);
    if func == pg_sys::InvalidOid {
        return None; // an extension version without it
    }
    crate::pg::lifecycle::ensure_registered(); // pending sums and unknown models go with an abort
    let relname: Rc<str> = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr())
        .to_string_lossy()
        .into();
    let spec = crate::features::pricing::usage::spec_for(
        relid,
        cost.tgoid,
        rel,
        || relname.to_string(),
        || trigger_args(cost),
    );
    // The rollups: fed here when the rollup row trigger would fire and nothing it reads is
    // computed after this point (generated columns); else that trigger stays on and counts.
    let rollup_i = named(b"llm_cost_rollup")
        .filter(|&i| fires(&all[i]) && is_ours(all[i].tgfoid, "rollup_row_trigger"));
    let (cost_tgoid, cost_foid) = (cost.tgoid, cost.tgfoid);
    let rollup_tg = rollup_i.map(|i| (all[i].tgoid, all[i].tgfoid));
    let mut rollups = rollup_i.and_then(|_| crate::features::rollups::copy_defs(relid, rel));
    #[cfg(any(test, feature = "pg_test"))]
    if tests::REBUILD_IN_PREPARE.with(|r| r.get()) {
        // What an invalidation processed by the look-ups above would do.
        pg_sys::RelationCacheInvalidateEntry(relid);
    }

    // The catalog look-ups and queries above may have processed an invalidation of this relation:
    // its cache entry was then rebuilt and the trigger list read at the top freed. Read the list
    // again; from here to the swap nothing but memory reads and copies run.
    let desc = (*rel).trigdesc;
    if desc.is_null() {
        return None;
    }
    let all = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
    let cost_i = all.iter().position(|t| {
        t.tgoid == cost_tgoid
            && t.tgfoid == cost_foid
            && t.tgtype & ROW_BEFORE_INSERT == ROW_BEFORE_INSERT
            && fires(t)
    })?;
    if all
        .iter()
        .enumerate()
        .any(|(i, t)| i != cost_i && t.tgtype & ROW_BEFORE_INSERT == ROW_BEFORE_INSERT)
    {
        return None;
    }
    let rollup_off = match (&rollups, rollup_tg) {
        (Some(_), Some((tgoid, foid))) => all
            .iter()
            .position(|t| t.tgoid == tgoid && t.tgfoid == foid && fires(t)),
        _ => None,
    };
    if rollup_off.is_none() {
        rollups = None; // the rollup row trigger (if any) stays on and counts
    }

    let ours =
        pgrx::PgMemoryContexts::CacheMemoryContext.switch_to(|_| pg_sys::CopyTriggerDesc(desc));
    let mine = std::slice::from_raw_parts_mut((*ours).triggers, (*ours).numtriggers as usize);
    let disabled = pg_sys::TRIGGER_DISABLED as std::ffi::c_char;
    mine[cost_i].tgenabled = disabled;
    if let Some(i) = rollup_off {
        mine[i].tgenabled = disabled;
    }
    // The flags COPY reads: no BEFORE row trigger left; AFTER row ones only if others remain.
    (*ours).trig_insert_before_row = false;
    (*ours).trig_insert_after_row = mine
        .iter()
        .enumerate()
        .any(|(i, t)| Some(i) != rollup_off && is_after_row_insert(t));
    Some(Armed {
        relid,
        rel,
        func,
        cost_tgoid,
        original: desc,
        ours,
        swapped: false,
        restored: false,
        spec,
        relname,
        rollups,
        started: false,
        active: false,
        cstate: std::ptr::null_mut(),
        econtext: std::ptr::null_mut(),
        lineno: None,
        set_up_as: None,
        saved_user: None,
    })
}

/// PostgreSQL refuses COPY FROM into a table with row-level security to a role subject to it,
/// whatever the policies: so llm_cost_writer could not bulk-load llm_cost.usage_events. Where a
/// COPY FROM STDIN could not be told from the same rows INSERTed, it is let through: COPY's
/// set-up (its permission and RLS checks) runs as the table owner, and everything that touches
/// a row runs as the writer. Returns that owner when all of these hold:
/// - the table has row-level security, not forced, and it applies to the caller;
/// - the rows come from the client (STDIN), with no WHERE clause of the application's (COPY
///   would evaluate both with the set-up's rights);
/// - the caller may INSERT into the table;
/// - no policy can refuse an inserted row: no restrictive INSERT/ALL policy applies to the
///   caller, and a permissive one that does checks `true` (llm_cost's `llm_cost_insert`).
unsafe fn rls_owner(relid: pg_sys::Oid, s: &pg_sys::CopyStmt) -> Option<pg_sys::Oid> {
    if !s.filename.is_null() || s.is_program || !s.whereClause.is_null() {
        return None;
    }
    if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true)
        != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    {
        return None;
    }
    if pg_sys::pg_class_aclcheck(
        relid,
        pg_sys::GetUserId(),
        pg_sys::ACL_INSERT as pg_sys::AclMode,
    ) != pg_sys::AclResult::ACLCHECK_OK
    {
        return None;
    }
    spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT c.relowner FROM pg_catalog.pg_class c
          WHERE c.oid = $1 AND c.relrowsecurity AND NOT c.relforcerowsecurity
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                             WHERE p.polrelid = c.oid AND p.polcmd IN ('a', '*') AND NOT p.polpermissive
                               AND EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE CASE WHEN r = 0 THEN true ELSE pg_catalog.pg_has_role(r, 'USAGE') END))
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                         WHERE p.polrelid = c.oid AND p.polcmd IN ('a', '*') AND p.polpermissive
                           AND EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE CASE WHEN r = 0 THEN true ELSE pg_catalog.pg_has_role(r, 'USAGE') END)
                           AND pg_catalog.pg_get_expr(coalesce(p.polwithcheck, p.polqual), p.polrelid) = 'true')",
        &[relid.into()],
    )
    .ok()
    .flatten()
}

/// At the first row: whether COPY runs with our copy of the trigger list (the cost trigger off
/// in its ResultRelInfo), and where its per-row expression context is.
unsafe fn first_row(a: &mut Armed, cstate: *mut c_void) {
    a.started = true;
    a.cstate = cstate;
    a.active = false;
    if llm_cost_copy_rel(cstate) != a.rel {
        return;
    }
    let qual = llm_cost_copy_qualexpr(cstate);
    if qual.is_null()
        || (*qual).parent.is_null()
        || (*(*qual).parent).type_ != pg_sys::NodeTag::T_ModifyTableState
    {
        return;
    }
    let mt = (*qual).parent as *mut pg_sys::ModifyTableState;
    let rri = (*mt).resultRelInfo;
    let estate = (*mt).ps.state;
    if rri.is_null() || estate.is_null() || (*estate).es_per_tuple_exprcontext.is_null() {
        return;
    }
    if (*rri).ri_RelationDesc != a.rel || (*rri).ri_TrigDesc.is_null() {
        return;
    }
    let td = (*rri).ri_TrigDesc;
    let trigs = std::slice::from_raw_parts((*td).triggers, (*td).numtriggers as usize);
    let off = trigs.iter().any(|t| {
        t.tgoid == a.cost_tgoid && t.tgenabled == pg_sys::TRIGGER_DISABLED as std::ffi::c_char
    });
    if !off || (*td).trig_insert_before_row {
        return;
    }
    a.econtext = (*estate).es_per_tuple_exprcontext;
    a.active = true;
}

/// Part of llm_cost's COPY FROM path: prices the row COPY is reading (see the module comment).
/// Always true. Not to be called directly.
#[pg_extern(stable, parallel_unsafe, name = "_copy_row")]
pub fn copy_row() -> bool {
    // SAFETY: called by COPY as its WHERE clause, with the COPY state set up by process_utility (checked inside).
    unsafe { copy_row_impl() }
}

unsafe fn copy_row_impl() -> bool {
    let top = pg_sys::error_context_stack;
    let in_copy =
        !top.is_null() && (*top).callback.map(|f| f as usize) == super::copy_error_callback();
    let cstate = if in_copy {
        (*top).arg
    } else {
        std::ptr::null_mut()
    };
    let work = ARMED.with(|a| {
        let mut a = a.borrow_mut();
        let a = a.last_mut()?;
        if cstate.is_null() {
            return None;
        }
        if !a.started {
            first_row(a, cstate);
            restore(a);
        }
        if !a.active || a.cstate != cstate {
            return Some(None);
        }
        let line = llm_cost_copy_lineno(cstate);
        if a.lineno == Some(line) {
            return Some(None);
        }
        a.lineno = Some(line);
        Some(Some((
            a.spec.clone(),
            a.relname.clone(),
            a.relid,
            a.rel,
            a.rollups.clone(),
            a.econtext,
        )))
    });
    let Some(work) = work else {
        crate::pg::fail::user(pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, "llm_cost._copy_row() is part of llm_cost's COPY FROM path and cannot be called directly")
            .raise();
    };
    let Some((spec, relname, relid, rel, rollups, econtext)) = work else {
        return true;
    };
    let slot = (*econtext).ecxt_scantuple;
    let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
    #[cfg(any(test, feature = "pg_test"))]
    if tests::MATERIALIZE_FIRST.with(|m| m.get()) {
        pg_sys::ExecMaterializeSlot(slot);
    }
    // COPY stored the row's values straight into the slot and has not formed a tuple yet (in
    // PostgreSQL 14-18 nothing before the WHERE clause does; should a later version, the tuple is
    // formed again from the priced values): change them there.
    let in_place = (*slot).tts_nvalid as usize == natts;
    if !in_place {
        pg_sys::slot_getsomeattrs_int(slot, natts as i32);
    }
    let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
    let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
    pgrx::PgMemoryContexts::For((*econtext).ecxt_per_tuple_memory).switch_to(|_| {
        let units = crate::features::pricing::usage::price_values(
            &spec, &relname, relid, rel, values, nulls,
        );
        if let Some(defs) = &rollups {
            crate::features::rollups::add_copied_row(defs, values, nulls, units);
        }
        if !in_place {
            let t = pg_sys::heap_form_tuple(
                (*slot).tts_tupleDescriptor,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
            pg_sys::ExecForceStoreHeapTuple(t, slot, true);
        }
    });
    ROWS.with(|r| r.set(r.get() + 1));
    super::count_copy_priced();
    true
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    thread_local! {
        /// Test hook: rebuild the relation cache entry right after the swap.
        pub static REBUILD_AFTER_SWAP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        /// Test hook: rebuild the relation cache entry while the COPY path is being prepared.
        pub static REBUILD_IN_PREPARE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        /// Test hook: have COPY's row formed as a tuple before `_copy_row` prices it.
        pub static MATERIALIZE_FIRST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[pg_extern]
    fn copy_materialize_first(on: bool) {
        MATERIALIZE_FIRST.with(|m| m.set(on));
    }

    #[pg_extern]
    fn copy_rebuild_in_prepare(on: bool) {
        REBUILD_IN_PREPARE.with(|r| r.set(on));
    }

    /// A relation cache rebuild while the path is prepared (an invalidation processed by its
    /// catalog look-ups and queries: another session's ANALYZE) frees the trigger list read
    /// first: the path reads it again, prices every row, and the entry keeps a valid list.
    /// (Before: a freed list was copied and later put back: rows stored unpriced and uncounted,
    /// or a crash.)
    #[pg_test]
    fn copy_after_a_relcache_rebuild_while_preparing_prices_every_row() {
        let paths = crate::test_support::paths;
        Spi::run("CREATE TABLE t_rp2 (created_at timestamptz NOT NULL DEFAULT '2026-10-01', model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text)").unwrap();
        Spi::run("SELECT llm_cost.track('t_rp2')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('rp2_total', 't_rp2', 'month', '{}')").unwrap();
        Spi::run("COPY (SELECT 'gpt-4o', g * 1000, g FROM generate_series(1, 300) g) TO '/tmp/llm_cost_pg_test_rp2.tsv'").unwrap();
        let copy =
            "COPY t_rp2 (model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_rp2.tsv'";
        let (_, t0, p0) = paths();
        Spi::run("SELECT tests.copy_rebuild_in_prepare(true)").unwrap();
        for _ in 0..5 {
            Spi::run(copy).unwrap();
        }
        Spi::run("SELECT tests.copy_rebuild_in_prepare(false)").unwrap();
        assert_eq!(paths().2, p0 + 1500);
        let wrong = Spi::get_one::<i64>("SELECT count(*) FROM t_rp2 WHERE cost_usd IS DISTINCT FROM llm_cost.estimate_cost(model, input_tokens, output_tokens, 0, 0, created_at) OR cost_source IS DISTINCT FROM 'estimated'");
        assert_eq!(wrong, Ok(Some(0)));
        let exact = Spi::get_one::<bool>(
            "SELECT r.requests = 1500 AND r.requests = t.n AND r.cost_usd = t.cost FROM rp2_total r, (SELECT count(*) AS n, sum(cost_usd) AS cost FROM t_rp2) t",
        );
        assert_eq!(exact, Ok(Some(true)));
        Spi::run(
            "INSERT INTO t_rp2 (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1000000, 0)",
        )
        .unwrap();
        assert_eq!(paths().1, t0 + 1);
        assert_eq!(
            Spi::get_one::<String>("SELECT cost_usd::text FROM t_rp2 WHERE output_tokens = 0")
                .unwrap()
                .as_deref(),
            Some("2.5")
        );
    }

    #[pg_extern]
    fn copy_rebuild_after_swap(on: bool) {
        REBUILD_AFTER_SWAP.with(|r| r.set(on));
    }

    /// The safety net: when the relation cache entry is rebuilt between the swap and COPY's copy
    /// of the trigger list, COPY runs with the real list, the triggers price the rows, and
    /// `_copy_row()` does nothing (no row priced or counted twice); the entry keeps its list.
    #[pg_test]
    fn copy_after_a_relcache_rebuild_goes_through_the_triggers() {
        let paths = crate::test_support::paths;
        Spi::run("CREATE TABLE t_rb (created_at timestamptz NOT NULL DEFAULT '2026-10-01', model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text)").unwrap();
        Spi::run("SELECT llm_cost.track('t_rb')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('rb_total', 't_rb', 'month', '{}')").unwrap();
        Spi::run("COPY (SELECT 'gpt-4o', g * 1000, g FROM generate_series(1, 300) g) TO '/tmp/llm_cost_pg_test_rb.tsv'").unwrap();
        let copy =
            "COPY t_rb (model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_rb.tsv'";
        let (c0, t0, p0) = paths();
        Spi::run("SELECT tests.copy_rebuild_after_swap(true)").unwrap();
        Spi::run(copy).unwrap();
        Spi::run("SELECT tests.copy_rebuild_after_swap(false)").unwrap();
        // The cost trigger priced every row and fed the rollup itself (its own COPY fast path).
        assert_eq!(paths(), (c0 + 300, t0, p0));
        Spi::run(copy).unwrap();
        assert_eq!(paths(), (c0 + 600, t0, p0 + 300));
        // The application's WHERE clause may read the whole row (before it is priced); and were
        // the row formed as a tuple before _copy_row, the priced values are stored all the same.
        Spi::run(&format!("{copy} WHERE row_to_json(t_rb) IS NOT NULL")).unwrap();
        Spi::run("SELECT tests.copy_materialize_first(true)").unwrap();
        Spi::run(copy).unwrap();
        Spi::run("SELECT tests.copy_materialize_first(false)").unwrap();
        assert_eq!(paths(), (c0 + 1200, t0, p0 + 900));
        let wrong = Spi::get_one::<i64>("SELECT count(*) FROM t_rb WHERE cost_usd IS DISTINCT FROM llm_cost.estimate_cost(model, input_tokens, output_tokens, 0, 0, created_at) OR cost_source <> 'estimated'");
        assert_eq!(wrong, Ok(Some(0)));
        let exact = Spi::get_one::<bool>(
            "SELECT r.requests = 1200 AND r.requests = t.n AND r.cost_usd = t.cost FROM rb_total r, (SELECT count(*) AS n, sum(cost_usd) AS cost FROM t_rb) t",
        );
        assert_eq!(exact, Ok(Some(true)));
        // The table's triggers are all there for the next statement.
        Spi::run(
            "INSERT INTO t_rb (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1000000, 0)",
        )
        .unwrap();
        assert_eq!(paths().1, t0 + 1);
        assert_eq!(Spi::get_one::<String>("SELECT cost_usd::text FROM t_rb WHERE input_tokens = 1000000 AND output_tokens = 0").unwrap().as_deref(), Some("2.5"));
    }
}
