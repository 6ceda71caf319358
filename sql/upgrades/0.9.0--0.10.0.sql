-- llm_cost 0.9.0 -> 0.10.0: speed at scale. One price catalog per server: every version of the
-- catalog is built once into an image in shared memory that every backend reads in place
-- (llm_cost in shared_preload_libraries; without it each backend keeps its own image, as
-- before). A version is named by llm_cost.catalog_version, set by every statement that changes
-- model_prices, model_aliases or providers. The no-overlap check of model_prices runs once per
-- statement over the rows it wrote (a 100,000-row load takes no lock per row).
--
-- Behaviour changes: catalog writers follow one another (the version row's lock, held until
-- the writer ends) rather than per model; llm_cost._catalog_stats() takes `reload` and reports
-- where the catalog came from.

CREATE SEQUENCE llm_cost.catalog_version_seq;
-- A primary key, so a publication FOR ALL TABLES replicates its updates (a subscriber then
-- sees the versions of the catalog rows it receives).
CREATE TABLE llm_cost.catalog_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO llm_cost.catalog_version (version) VALUES (pg_catalog.nextval('llm_cost.catalog_version_seq'));
COMMENT ON TABLE llm_cost.catalog_version IS
'One row: the price catalog''s version, set by every change to model_prices, model_aliases or providers. Backends that see the same version read the same shared catalog image. Written only by llm_cost.';
REVOKE ALL ON llm_cost.catalog_version, llm_cost.catalog_version_seq FROM PUBLIC;
GRANT SELECT ON llm_cost.catalog_version TO PUBLIC;

DROP TRIGGER model_prices_no_overlap ON llm_cost.model_prices;

-- @generated

CREATE TRIGGER model_prices_no_overlap_insert
    AFTER INSERT ON llm_cost.model_prices REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost._model_prices_no_overlap();
CREATE TRIGGER model_prices_no_overlap_update
    AFTER UPDATE ON llm_cost.model_prices REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost._model_prices_no_overlap();
