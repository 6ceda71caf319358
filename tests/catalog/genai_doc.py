"""The genai-prices dataset bundled in the Python package, written as its data.json (the document
llm_cost.import_prices reads): providers, models, match rules, prices, dated prices, variants."""
import datetime
import decimal
from genai_prices import types as T
from genai_prices.data import providers


def rule(m):
    if m is None:
        return None
    for cls, key, attr in ((T.ClauseEquals, "equals", "equals"), (T.ClauseStartsWith, "starts_with", "starts_with"),
                           (T.ClauseEndsWith, "ends_with", "ends_with"), (T.ClauseContains, "contains", "contains"),
                           (T.ClauseRegex, "regex", "regex")):
        if isinstance(m, cls):
            return {key: getattr(m, attr)}
    if isinstance(m, T.ClauseOr):
        return {"or": [rule(x) for x in m.or_]}
    return {"and": [rule(x) for x in m.and_]}


def num(v):
    if isinstance(v, T.TieredPrices):
        return {"base": num(v.base), "tiers": [{"start": t.start, "price": num(t.price)} for t in v.tiers]}
    return float(v) if isinstance(v, decimal.Decimal) and v != v.to_integral() else int(v) if isinstance(v, decimal.Decimal) else v


def prices(mp):
    return {k: num(v) for k, v in mp.__dict__.items() if v is not None and not k.startswith("_")}


def constraint(c):
    if c is None:
        return None
    if isinstance(c, T.StartDateConstraint):
        return {"start_date": c.start_date.isoformat()}
    return {"start_time": c.start_time.isoformat(), "end_time": c.end_time.isoformat()}


def document():
    out = []
    for p in providers:
        models = []
        for m in p.models:
            d = {"id": m.id, "match": rule(m.match)}
            if isinstance(m.prices, T.ModelPrice):
                d["prices"] = prices(m.prices)
            else:
                d["prices"] = [{"constraint": constraint(c.constraint), "prices": prices(c.prices)} for c in m.prices]
            if m.price_variants:
                d["price_variants"] = [{"when": v.when, "prices": prices(v.prices), "constraint": constraint(v.constraint)}
                                       for v in m.price_variants]
            models.append(d)
        out.append({"id": p.id, "name": p.name, "pricing_urls": p.pricing_urls, "model_match": rule(p.model_match),
                    "provider_match": rule(p.provider_match), "fallback_model_providers": p.fallback_model_providers,
                    "models": models})
    return out
