//! Citus metadata, read only where the citus extension is installed (llm_cost does not depend on
//! it). The SQL side has the same questions in sql/citus.sql.

use super::spi;
use pgrx::prelude::*;

/// Whether `relid` is a table Citus distributes (or replicates): its metadata table exists in
/// this database only where the citus extension is installed (checked without a query first).
pub fn is_citus_table(relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog name look-up; a NUL-terminated name.
    let metadata = unsafe {
        pg_sys::get_relname_relid(
            c"pg_dist_partition".as_ptr(),
            pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE),
        )
    };
    if metadata == pg_sys::InvalidOid {
        return false;
    }
    spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)",
        &[relid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}
