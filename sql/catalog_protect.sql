-- Shipped rows are maintained by extension upgrades; a DBA overrides them with own rows.
-- (Created after the shipped rows are inserted; upgrade scripts that change shipped rows
-- disable it around the change: ALTER TABLE ... DISABLE TRIGGER model_prices_protect_shipped.)
CREATE FUNCTION llm_cost._model_prices_protect_shipped() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- A copy of the table (a shard of the catalog made a Citus reference table) takes what the
    -- table itself accepted.
    IF TG_TABLE_NAME <> 'model_prices' THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'row % of llm_cost.model_prices ships with the extension and cannot be changed', OLD.id
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Insert your own row for this model instead (origin ''user''): it overrides the shipped price wherever it is valid.';
    END IF;
    IF TG_OP = 'INSERT' AND NEW.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'only the extension inserts rows with origin ''llm_cost'''
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Leave origin at its default, ''user''.';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'a row cannot be turned into a shipped row' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;

CREATE TRIGGER model_prices_protect_shipped
    BEFORE INSERT OR UPDATE OR DELETE ON llm_cost.model_prices
    FOR EACH ROW EXECUTE FUNCTION llm_cost._model_prices_protect_shipped();


-- Shipped providers, likewise: add your own (origin 'user'), leave the shipped ones to upgrades.
CREATE FUNCTION llm_cost._providers_protect_shipped() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME <> 'providers' THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'provider % ships with the extension and cannot be changed', OLD.provider
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Add your own provider row, or your own price rows for the models you need.';
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'only the extension writes providers with origin ''llm_cost''' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;

CREATE TRIGGER providers_protect_shipped
    BEFORE INSERT OR UPDATE OR DELETE ON llm_cost.providers
    FOR EACH ROW EXECUTE FUNCTION llm_cost._providers_protect_shipped();
