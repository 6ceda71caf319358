#!/usr/bin/env python3
"""Writes sql/prices.sql, the price catalog llm_cost ships, from the genai-prices dataset.

    scripts/gen_prices.py            # needs genai-prices==GENAI_PRICES_VERSION (scripts/setup.sh installs it)

Source: genai-prices (https://github.com/pydantic/genai-prices, MIT licence, notice kept in
prices/LICENSE-genai-prices). Every row records where it came from (`source_url`: the provider's
pricing page; `data_from`: the dataset and its version).

What is kept, per provider and model:
- the dataset's match rule (`match_rule`, jsonb: equals / starts_with / ends_with / contains / regex /
  or / and, as in the dataset's data.json); the provider's own rules go to llm_cost.providers;
- token prices: input, output, cache read, cache write (5 minutes) and 1 hour; long-context tiers
  become one row per tier (`min_input_tokens` = the tier's start + 1: the dataset charges the tier
  when the prompt is *above* its start);
- dated price changes become validity periods (`valid_from`/`valid_to`);
- service-tier variants (batch, flex, priority, fast) become rows with that `service_tier`;
- per-modality token prices (audio in, cached audio, audio out; image in, cached image, image out),
  web-search fees (per 1,000 searches) and per-request fees (per 1,000 calls);
- time-of-day prices (DeepSeek's peak hours) become rows with a daily UTC window
  (`time_of_day_from`/`time_of_day_to`) over the validity periods where the dataset's "last active
  price wins" rule makes them apply; the all-day price is the row without a window.
Curated prices (prices/curated.csv, the published reference list with the provider's pricing page
for every row) win where they disagree with the dataset: a curated model whose id the dataset also
has gets the curated standard prices (its match rule and service tiers stay the dataset's); other
curated models ship as models of their own, matched by their id (checked before any rule).

A curated price replaces the dataset's standard prices of a model, except where it is one of the
model's time-of-day prices: then the dataset's schedule, which it confirms, is kept. Curated
modality prices (prices/curated_modalities.csv: audio and image prices the dataset lacks, with
their source) are added to every row of the model that has none of its own.

What is left out (counted in the summary): prices that are not per token, search or request (audio
hours, pages, file searches, video tokens), models with no token input price.
"""
import csv
import datetime
import decimal
import json
import pathlib
import sys
from collections import Counter

GENAI_PRICES_VERSION = "0.2.3"
root = pathlib.Path(__file__).resolve().parent.parent

try:
    import genai_prices
    from genai_prices import types as T
    from genai_prices.data import providers
except ImportError:
    sys.exit(f"gen_prices.py: pip install genai-prices=={GENAI_PRICES_VERSION} (scripts/setup.sh puts it in target/venv)")
if genai_prices.__version__ != GENAI_PRICES_VERSION:
    sys.exit(f"gen_prices.py: genai-prices {genai_prices.__version__} installed, the catalog is pinned to {GENAI_PRICES_VERSION}")

DATA_FROM = f"genai-prices {GENAI_PRICES_VERSION} (MIT)"
KEYS = {  # dataset price key -> our column
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write_5m",
    "cache_write_5m_mtok": "cache_write_5m",
    "cache_write_1h_mtok": "cache_write_1h",
    "input_audio_mtok": "input_audio",
    "cache_audio_read_mtok": "cache_read_audio",
    "output_audio_mtok": "output_audio",
    "input_image_mtok": "input_image",
    "cache_image_read_mtok": "cache_read_image",
    "output_image_mtok": "output_image",
    "web_searches_kcount": "web_search",
    "requests_kcount": "request",
}
# Our columns in insert order (after the five token prices).
EXTRA_COLS = ["input_audio", "cache_read_audio", "output_audio", "input_image", "cache_read_image",
              "output_image", "web_search", "request"]
TIERS = {  # variant condition -> our service_tier
    ("processing", "batch"): "batch",
    ("service_tier", "batch"): "batch",
    ("service_tier", "flex"): "flex",
    ("service_tier", "priority"): "priority",
    ("service_tier", "fast"): "fast",
    ("speed", "fast"): "fast",
}
skipped = Counter()


def rule_json(m):
    """A match clause as the dataset's data.json writes it."""
    if m is None:
        return None
    if isinstance(m, T.ClauseEquals):
        return {"equals": m.equals}
    if isinstance(m, T.ClauseStartsWith):
        return {"starts_with": m.starts_with}
    if isinstance(m, T.ClauseEndsWith):
        return {"ends_with": m.ends_with}
    if isinstance(m, T.ClauseContains):
        return {"contains": m.contains}
    if isinstance(m, T.ClauseRegex):
        return {"regex": m.regex}
    if isinstance(m, T.ClauseOr):
        return {"or": [rule_json(x) for x in m.or_]}
    if isinstance(m, T.ClauseAnd):
        return {"and": [rule_json(x) for x in m.and_]}
    raise ValueError(f"unknown clause {m!r}")


def dec(v):
    d = decimal.Decimal(v).normalize()
    if d == d.to_integral():
        d = d.quantize(decimal.Decimal(1))
    return d


def price_at(v, prompt_above):
    """The price of one key for prompts of more than `prompt_above` tokens."""
    if isinstance(v, T.TieredPrices):
        p = v.base
        for t in v.tiers:
            if prompt_above >= t.start:
                p = t.price
        return p
    return v


def rows_of(mp):
    """One ModelPrice -> [(min_input_tokens, {column: Decimal})], or None if not per-token."""
    d = {k: v for k, v in mp.__dict__.items() if v is not None and not k.startswith("_")}
    if not d:
        # No price at all: the dataset charges nothing (OpenRouter's `:free` models).
        d = {"input_mtok": decimal.Decimal(0), "output_mtok": decimal.Decimal(0)}
    if not any(k in KEYS for k in d):
        return None
    if "input_mtok" not in d:
        d["input_mtok"] = decimal.Decimal(0)
    for k in d:
        if k not in KEYS:
            skipped[f"non-token price key {k} (left out)"] += 1
    starts = sorted({t.start for k, v in d.items() if k in KEYS and isinstance(v, T.TieredPrices) for t in v.tiers})
    out = []
    for lo in [0] + [s + 1 for s in starts]:
        above = lo - 1 if lo else -1
        cols = {}
        for k, col in KEYS.items():
            if k in d:
                cols[col] = dec(price_at(d[k], above))
        out.append((lo, cols))
    return out


def window_of(c):
    """A TimeOfDateConstraint as ('HH:MM:SS', 'HH:MM:SS') in UTC."""
    f = T._utc_timetz(c.start_time)
    t = T._utc_timetz(c.end_time)
    return (f.strftime("%H:%M:%S"), t.strftime("%H:%M:%S"))


def segments(model):
    """All-day prices [(valid_from, valid_to, ModelPrice)] and time-of-day prices
    [(valid_from, valid_to, window, ModelPrice)] from the model's conditional prices. The dataset's
    rule: the last active price in list order wins; the first price applies before any start date.
    So in each period between start dates, a time-of-day price applies in its window when it comes
    after the period's all-day price in the list."""
    if isinstance(model.prices, T.ModelPrice):
        return [(None, None, model.prices)], []
    entries = list(model.prices)
    starts = sorted({c.constraint.start_date for c in entries if isinstance(c.constraint, T.StartDateConstraint)})
    bounds = [None] + starts
    out, tods = [], []
    for i, b in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else None
        ia, active = -1, next((c.prices for c in entries if not isinstance(c.constraint, T.TimeOfDateConstraint)), entries[0].prices)
        for j, c in enumerate(entries):
            if c.constraint is None or (isinstance(c.constraint, T.StartDateConstraint) and b is not None and c.constraint.start_date <= b):
                ia, active = j, c.prices
        if out and out[-1][2] is active:
            out[-1] = (out[-1][0], end, active)
        else:
            out.append((b, end, active))
        for j, c in enumerate(entries):
            if isinstance(c.constraint, T.TimeOfDateConstraint) and j > ia:
                tods.append((b, end, window_of(c.constraint), c.prices))
    # Adjacent periods of one window with the same prices are one row.
    tods.sort(key=lambda x: (x[2], x[0] or datetime.date.min))
    merged = []
    for t in tods:
        if merged and merged[-1][2] == t[2] and merged[-1][3] is t[3] and merged[-1][1] == t[0]:
            merged[-1] = (merged[-1][0], t[1], t[2], t[3])
        else:
            merged.append(t)
    return out, merged


def variant_prices(model, tier, start):
    """Overrides for a service tier active from `start` (first matching variant wins per key)."""
    over = {}
    found = False
    for v in model.price_variants or []:
        items = list(v.when.items())
        if len(items) != 1 or TIERS.get(items[0]) != tier:
            continue
        c = v.constraint
        if c is not None:
            if not isinstance(c, T.StartDateConstraint):
                continue
            if start is None or c.start_date > start:
                continue
        found = True
        for k, p in v.prices.__dict__.items():
            if p is not None and not k.startswith("_"):
                over.setdefault(k, p)
    return over if found else None


def variant_starts(model, tier):
    return sorted({v.constraint.start_date for v in model.price_variants or []
                   if len(v.when) == 1 and TIERS.get(next(iter(v.when.items()))) == tier
                   and isinstance(v.constraint, T.StartDateConstraint)})


def q(v):
    return "NULL" if v is None else "'" + str(v).replace("'", "''") + "'"


def n(v):
    return "NULL" if v is None else str(v)


def ts(d):
    return "'-infinity'" if d is None else f"'{d.isoformat()} 00:00:00+00'"


def te(d):
    return "'infinity'" if d is None else f"'{d.isoformat()} 00:00:00+00'"


curated = {}
for r in csv.DictReader(open(root / "prices" / "curated.csv")):
    curated.setdefault((r["provider"], r["model"].lower()), []).append(r)
curated_used = set()
curated_modal = {}
for r in csv.DictReader(open(root / "prices" / "curated_modalities.csv")):
    curated_modal[(r["provider"], r["model"].lower())] = {
        col: dec(r[f"{col}_per_mtok"]) for col in ("input_audio", "cache_read_audio", "output_audio", "input_image", "cache_read_image", "output_image")
        if r[f"{col}_per_mtok"]}


def curated_rows(rs):
    out = []
    for r in sorted(rs, key=lambda r: int(r["min_input_tokens"] or 0)):
        cols = {"input": dec(r["input_per_mtok"]), "output": dec(r["output_per_mtok"] or 0)}
        for k, c in (("cache_read_per_mtok", "cache_read"), ("cache_write_5m_per_mtok", "cache_write_5m"), ("cache_write_1h_per_mtok", "cache_write_1h")):
            if r[k]:
                cols[c] = dec(r[k])
        mn = int(r["min_input_tokens"] or 0)
        out.append(("standard", mn + 1 if mn else 0, None, None, cols, r))
    return out


prov_lines, price_lines = [], []
seen = set()
next_id = 1
providers_out = 0
for p in providers:
    url = (p.pricing_urls or [None])[0]
    fallback = "NULL" if not p.fallback_model_providers else "ARRAY[" + ", ".join(q(x) for x in p.fallback_model_providers) + "]"
    mm, pm = rule_json(p.model_match), rule_json(p.provider_match)
    prov_lines.append("  ({}, {}, {}, {}, {}, {}, {}, 'llm_cost')".format(
        q(p.id), q(p.name), q(url), q(json.dumps(mm)) + "::jsonb" if mm else "NULL",
        q(json.dumps(pm)) + "::jsonb" if pm else "NULL", fallback, q(DATA_FROM)))
    providers_out += 1
    for m in p.models:
        key = (p.id, m.id.lower())
        if key in seen:
            skipped["duplicate model id in a provider"] += 1
            continue
        seen.add(key)
        rule = json.dumps(rule_json(m.match))
        segs, tods = segments(m)
        emitted = []
        for tier in ["standard", "batch", "flex", "priority", "fast"]:
            cuts = sorted({s for s, _, _ in segs if s is not None} | set(variant_starts(m, tier)))
            bounds = [None] + cuts
            for i, start in enumerate(bounds):
                end = bounds[i + 1] if i + 1 < len(bounds) else None
                base = next(mp for s, e, mp in segs if (s is None or (start is not None and s <= start)) and (e is None or (start is None or start < e)))
                if tier == "standard":
                    mp = base
                else:
                    over = variant_prices(m, tier, start)
                    if over is None:
                        continue
                    mp = T.ModelPrice(**{**{k: v for k, v in base.__dict__.items() if not k.startswith("_")}, **over})
                rows = rows_of(mp)
                if rows is None:
                    continue
                for lo, cols in rows:
                    emitted.append((tier, lo, start, end, cols, None))
        for start, end, window, mp in tods:
            for lo, cols in rows_of(mp) or []:
                emitted.append(("standard", lo, start, end, cols, window))
        cur = curated.get((p.id, m.id.lower()))
        if cur:
            curated_used.add((p.id, m.id.lower()))
            cur_std = [e[:5] + (None,) for e in curated_rows(cur)]
            tod_prices = [{k: v for k, v in e[4].items() if k in ("input", "output")} for e in emitted if e[5] is not None]
            if any({k: v for k, v in c[4].items() if k in ("input", "output")} in tod_prices for c in cur_std):
                # The curated price is one of the dataset's time-of-day prices: the schedule is kept,
                # with the cache prices the curated list has and the dataset does not.
                skipped["curated prices confirming a time-of-day schedule (schedule kept)"] += 1
                for e in emitted:
                    if e[0] == "standard":
                        for k in ("cache_read", "cache_write_5m", "cache_write_1h"):
                            if k in cur_std[0][4] and k not in e[4]:
                                e[4][k] = cur_std[0][4][k]
            else:
                # The curated list has the token prices only: the dataset's current modality
                # prices and fees of the model stay.
                std_now = [e for e in emitted if e[0] == "standard" and e[5] is None and e[3] is None]
                for c in cur_std:
                    same_tier = [e for e in std_now if e[1] == c[1]] or std_now[:1]
                    for e in same_tier[:1]:
                        for k in EXTRA_COLS:
                            if k in e[4] and k not in c[4]:
                                c[4][k] = e[4][k]
                emitted = [e for e in emitted if e[0] != "standard"] + cur_std
            emitted.sort(key=lambda e: ["standard", "batch", "flex", "priority", "fast"].index(e[0]))
        if not emitted:
            skipped["model without a per-token price"] += 1
            continue
        for col, v in curated_modal.get((p.id, m.id.lower()), {}).items():
            skipped["curated modality prices added to a model's rows"] += 1
            for e in emitted:
                e[4].setdefault(col, v)
        # Merge adjacent periods with equal prices.
        merged = []
        for e in emitted:
            if merged and merged[-1][0] == e[0] and merged[-1][1] == e[1] and merged[-1][4] == e[4] and merged[-1][3] == e[2] and merged[-1][5] == e[5]:
                merged[-1] = (e[0], e[1], merged[-1][2], e[3], e[4], e[5])
            else:
                merged.append(e)
        ok = True
        notes = {}
        if (p.id, m.id.lower()) in curated_modal:
            notes["modal"] = "audio/image prices curated (prices/curated_modalities.csv)"
        for *_, cols, _window in merged:
            for k, v in list(cols.items()):
                if v < 0 or v >= 1000000:
                    ok = False
                elif max(0, -v.as_tuple().exponent) > 10:
                    # A derived price such as 1/24 (0.0416666666666667): rounded to the catalog's
                    # 10 decimals, which keeps the cost arithmetic exact; the row's note says so.
                    r = dec(v.quantize(decimal.Decimal("1e-10"), rounding=decimal.ROUND_HALF_EVEN))
                    notes[k] = f"{k} rounded to 10 decimals from {v}"
                    cols[k] = r
        if not ok:
            skipped["price outside 0..1e6"] += 1
            continue
        if set(notes) - {"modal"}:
            skipped["models with a price rounded to 10 decimals (noted in the row)"] += 1
        note = "; ".join(sorted(set(notes.values()))) or None
        for tier, lo, start, end, cols, window in merged:
            mode = "chat" if "output" in cols else "embedding"
            extra = ", ".join(n(cols.get(c)) for c in EXTRA_COLS)
            win = "NULL, NULL" if window is None else f"'{window[0]}', '{window[1]}'"
            price_lines.append("  ({}, {}, {}, '{}', {}, '{}', {}, {}, {}, {}, {}, {}, {}, {}::jsonb, {}, {}, {}, 'llm_cost', {}, {})".format(
                next_id, q(p.id), q(m.id), mode, lo, tier, n(cols.get("input")), n(cols.get("output", 0)),
                n(cols.get("cache_read")), n(cols.get("cache_write_5m")), n(cols.get("cache_write_1h")),
                ts(start), te(end), q(rule), q(url), q(DATA_FROM), q(note), extra, win))
            next_id += 1

# Curated models the dataset does not have under that id: models of their own, matched by id,
# unless a dataset model covering the name already charges the curated prices (its tiers stay).
by_id = {p.id: p for p in providers}
for (pid, mid), rs in curated.items():
    if (pid, mid) in curated_used:
        continue
    dm = by_id[pid].find_model(mid) if pid in by_id else None
    if dm is not None:
        base = dm.prices if isinstance(dm.prices, T.ModelPrice) else dm.prices[-1].prices
        base_rows = rows_of(base) or []
        want = [c for _, _, _, _, c, _ in curated_rows([r for r in rs if not int(r["min_input_tokens"] or 0)])]
        if base_rows and want and {k: v for k, v in base_rows[0][1].items() if k in want[0]} == want[0]:
            skipped["curated prices the dataset already charges"] += 1
            continue
    for tier, lo, start, end, cols, r in curated_rows(rs):
        price_lines.append("  ({}, {}, {}, {}, {}, '{}', {}, {}, {}, {}, {}, '-infinity', 'infinity', NULL, {}, {}, {}, 'llm_cost', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)".format(
            next_id, q(pid), q(r["model"]), q(r["mode"]), lo, tier, n(cols.get("input")), n(cols.get("output", 0)),
            n(cols.get("cache_read")), n(cols.get("cache_write_5m")), n(cols.get("cache_write_1h")),
            q(r["source"] or None), q(r["data_from"]), q("curated: the published reference price (prices/curated.csv)")))
        next_id += 1
    skipped["curated models shipped under their own id"] += 1
out = [
    f"-- Generated by scripts/gen_prices.py from genai-prices {GENAI_PRICES_VERSION} (MIT, see prices/LICENSE-genai-prices):",
    "-- do not edit by hand. USD per 1M tokens; a NULL cache price means the input price applies.",
    f"-- {providers_out} providers, {len(price_lines)} price rows.",
    "INSERT INTO llm_cost.providers (provider, name, pricing_url, model_match, provider_match, fallback_providers, data_from, origin) VALUES",
    ",\n".join(prov_lines) + ";",
    "",
    "INSERT INTO llm_cost.model_prices (id, provider, model, mode, min_input_tokens, service_tier, input_usd_per_mtok,",
    "    output_usd_per_mtok, cache_read_usd_per_mtok, cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok,",
    "    valid_from, valid_to, match_rule, source_url, data_from, note, origin,",
    "    input_audio_usd_per_mtok, cache_read_audio_usd_per_mtok, output_audio_usd_per_mtok, input_image_usd_per_mtok,",
    "    cache_read_image_usd_per_mtok, output_image_usd_per_mtok, web_search_usd_per_1k, request_usd_per_1k,",
    "    time_of_day_from, time_of_day_to) OVERRIDING SYSTEM VALUE VALUES",
    ",\n".join(price_lines) + ";",
]
(root / "sql" / "prices.sql").write_text("\n".join(out) + "\n")
print(f"wrote {len(price_lines)} price rows for {providers_out} providers")
for k, v in sorted(skipped.items()):
    print(f"  left out: {k}: {v}")
