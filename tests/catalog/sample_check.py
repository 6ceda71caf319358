#!/usr/bin/env python3
"""Prices a sample of model names as applications and routers send them, with llm_cost and with
genai-prices (the dataset the catalog is generated from), and reports how many agree.

    target/venv/bin/python tests/catalog/sample_check.py "host=... port=... dbname=..." [N]

Spellings per provider: OpenRouter ids as is and with `openrouter/`; other hosts with their
LiteLLM prefix (`groq/`, `bedrock/`, `together_ai/`, ...) and, for model makers, bare.

Every call has audio and image tokens in and out and two web searches (priced where the model has
modality prices and a search fee, as text and free elsewhere; a request fee is charged once per
call), at a random minute of the day (time-of-day prices): the check covers the catalog's
modality, fee and time-of-day prices as well as its token prices.
"""
import datetime, random, sys
import psycopg
from genai_prices import calc_price, Usage
from genai_prices.data import providers
from genai_prices import types as T

PREFIX = {"aws": "bedrock", "google": "vertex_ai", "azure": "azure", "groq": "groq", "together": "together_ai",
          "fireworks": "fireworks_ai", "x-ai": "xai", "mistral": "mistral", "deepseek": "deepseek",
          "anthropic": "anthropic", "openai": "openai", "cohere": "cohere", "perplexity": "perplexity",
          "moonshotai": "moonshot", "zai": "zai", "cerebras": "cerebras"}

def equals_of(m):
    out = []
    def walk(r):
        if isinstance(r, T.ClauseEquals): out.append(r.equals)
        if isinstance(r, T.ClauseOr): [walk(x) for x in r.or_]
    walk(m.match)
    return out

def sellers(name):
    out = set()
    for q in providers:
        if q.id.startswith("huggingface"):
            continue
        try:
            if q._match_model(name.lower()) is not None:
                out.add(q.id)
        except Exception:
            pass
    return out


openrouter = next((q for q in providers if q.id == "openrouter"), None)


def run(dsn, n=400, seed=15):
    """(names, same price, different price, unpriced, the differing and unpriced cases)."""
    rnd = random.Random(seed)
    cases = []
    for p in providers:
        if p.id.startswith("huggingface"):
            continue
        for m in p.models:
            names = equals_of(m)
            if not names:
                continue
            name = rnd.choice(names)
            if p.id == "openrouter":
                # OpenRouter ids are vendor/model; a bare alias in its list is another host's name.
                if "/" not in name:
                    continue
                cases.append((name, None, p.id)); cases.append(("openrouter/" + name, None, p.id))
            elif p.id in PREFIX:
                # `vendor/model` is also how OpenRouter spells its ids: a prefixed name that is an
                # OpenRouter id names two hosts (whose search and request fees differ).
                if not (openrouter is not None and openrouter._match_model((PREFIX[p.id] + "/" + name).lower()) is not None):
                    cases.append((PREFIX[p.id] + "/" + name, None, p.id))
                # Bare names only where they name one host: a bare name several hosts sell at
                # different prices has no single published price to compare with.
                if p.model_match is not None and sellers(name) == {p.id}:
                    cases.append((name, None, p.id))
            cases.append((name, p.id, p.id))
    rnd.shuffle(cases)
    cases = cases[:n]
    agree = differ = unpriced = skipped = 0
    bad = []
    today = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    parts = dict(input_audio_tokens=200, input_image_tokens=150, output_audio_tokens=100, output_image_tokens=50, web_searches=2)
    with psycopg.connect(dsn) as conn:
        for name, prov, host in cases:
            at = today.replace(hour=rnd.randrange(24), minute=rnd.randrange(60))
            try:
                want = calc_price(Usage(input_tokens=1000, output_tokens=1000, **parts), name.split("/", 1)[1] if (prov is None and host != "openrouter" and "/" in name and name.split("/")[0] in PREFIX.values()) else (name[len("openrouter/"):] if name.startswith("openrouter/") else name), provider_id=host, genai_request_timestamp=at).total_price
            except Exception:
                skipped += 1
                continue
            got = conn.execute("""SELECT llm_cost.estimate_cost(%s, 1000, 1000, at => %s, provider => %s, input_audio_tokens => 200,
                                         input_image_tokens => 150, output_audio_tokens => 100, output_image_tokens => 50, web_searches => 2)""",
                               (name, at, prov)).fetchone()[0]
            if got is None and want == 0:
                # A model priced per second, page or character: genai-prices finds nothing in a
                # token usage to price ($0); llm_cost does not price it per token (never a silent
                # $0). Not a price to compare.
                skipped += 1
                continue
            if got is None:
                unpriced += 1; bad.append(("NULL", name, prov, want))
            elif got == want:
                agree += 1
            else:
                differ += 1; bad.append((str(got), name, prov, want, at.strftime("%H:%M")))
    return agree + differ + unpriced, agree, differ, unpriced, bad


def main():
    total, agree, differ, unpriced, bad = run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400)
    print(f"{total} names: {agree} priced as the host publishes ({100*agree/total:.1f}%), {differ} differently ({100*differ/total:.1f}%), {unpriced} unpriced")
    for b in bad[:40]:
        print("  ", *b)
    return 0 if agree >= 0.98 * total and differ <= 0.005 * total else 1


if __name__ == "__main__":
    sys.exit(main())
