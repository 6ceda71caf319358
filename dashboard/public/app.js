// llm_cost dashboard: reads GraphQL only (with the visitor's token from the URL: #token=...),
// so what it shows is what row-level security lets that token see. Every figure carries a
// data-k key (the browser test compares them with the SQL views).
'use strict';

const token = new URLSearchParams(location.hash.slice(1)).get('token');

// ---- exact money: decimal strings as BigInt, formatted like llm_cost.format_cost ----------
function parseDec(s) {
  s = String(s).trim();
  const neg = s.startsWith('-');
  if (neg || s.startsWith('+')) s = s.slice(1);
  const [i, f = ''] = s.split('.');
  return { neg, units: BigInt((i || '0') + f), scale: f.length };
}
const pow10 = (n) => 10n ** BigInt(n);
function roundHalfAway(units, scale, dp) {
  // units / 10^scale rounded to dp decimals, as units of 10^-dp.
  if (scale <= dp) return units * pow10(dp - scale);
  const div = pow10(scale - dp);
  const q = units / div;
  const r = units % div;
  return 2n * r >= div ? q + 1n : q;
}
function fixed(units, dp) {
  const s = units.toString().padStart(dp + 1, '0');
  return dp === 0 ? s : `${s.slice(0, -dp)}.${s.slice(-dp)}`;
}
function formatCost(value) {
  if (value === null || value === undefined) return 'unpriced';
  const { neg, units, scale } = parseDec(value);
  if (units === 0n) return '$0.00';
  const cent = pow10(scale) / 100n; // 0.01 in units (scale >= 2 assumed below)
  let body;
  if (scale > 2 && units < cent) {
    // Two significant digits: first significant digit at decimal place e.
    let e = 2;
    while (units * pow10(e) < pow10(scale) && e < 28) e += 1;
    const r = roundHalfAway(units, scale, e + 1);
    body = r >= pow10(e + 1 - 2) ? '0.01' : fixed(r, e + 1);
  } else {
    const r = fixed(roundHalfAway(units, scale, 2), 2);
    const [i, f] = r.split('.');
    body = `${i.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}.${f}`;
  }
  return `${neg ? '-' : ''}$${body}`;
}
// cost / n to 20 decimals (exact enough for display), as a decimal string.
function divide(cost, n) {
  if (cost === null || cost === undefined || !n) return null;
  const { neg, units, scale } = parseDec(cost);
  const q = (units * pow10(20)) / (pow10(scale) * BigInt(n));
  return (neg ? '-' : '') + fixed(q, 20);
}
const int = (v) => (v === null || v === undefined ? '' : Number(v).toLocaleString('en-US'));
const asNumber = (v) => (v === null || v === undefined ? 0 : Number(v));

// ---- GraphQL --------------------------------------------------------------------------------
async function gql(query, variables) {
  const res = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors) throw new Error(body.errors.map((e) => e.message).join('; '));
  return body.data;
}

// Any rollup the token may read (yours too), over the chosen range and filters: every panel of
// the top half reads llm_cost's report functions on it (the reader's row-level security applies).
// Chosen with #rollup=<name>&from=YYYY-MM-DD&to=YYYY-MM-DD (to inclusive)&f.<column>=<value>.
const hashParams = new URLSearchParams(location.hash.slice(1));
let chosenRollup = hashParams.get('rollup');
const state = {
  preset: hashParams.get('from') ? 'custom' : 'month',
  from: hashParams.get('from'),
  to: hashParams.get('to'),
  filter: Object.fromEntries([...hashParams.entries()].filter(([k]) => k.startsWith('f.')).map(([k, v]) => [k.slice(2), v])),
};
// (forecast and anomalies at the server's now(), not the browser's clock)
const INSIGHTS = `query Insights($rollup: RegClass!, $by: [String]!, $all: [String]!, $from: Datetime!, $to: Datetime!, $filter: JSON!) {
  total: spendBy(rollup: $rollup, by: [], from: $from, to: $to, filter: $filter) {
    nodes { requests costUsd unpricedRequests errorRequests errorCostUsd latencyMsAvg latencyMsMax } }
  groups: spendBy(rollup: $rollup, by: $all, from: $from, to: $to, filter: $filter, first: 100) { nodes { group requests costUsd unpricedRequests } }
  choices: spendBy(rollup: $rollup, by: $all, from: $from, to: $to) { nodes { group } }
  breakdown: spendBy(rollup: $rollup, by: $by, from: $from, to: $to, filter: $filter) {
    nodes { group requests costUsd errorRequests errorCostUsd latencyMsAvg latencyMsMax } }
  trend: spendTrend(rollup: $rollup, from: $from, to: $to, filter: $filter) { nodes { periodStart requests costUsd unpricedRequests } }
  pct: costPercentiles(rollup: $rollup, by: $by, from: $from, to: $to, filter: $filter) { nodes { group pricedRequests meanUsd costUsd maxUsd } }
  cacheTotal: cacheSavingsBy(rollup: $rollup, by: [], from: $from, to: $to, filter: $filter) { nodes { netCacheSavingsUsd } }
  cache: cacheSavingsBy(rollup: $rollup, by: $by, from: $from, to: $to, filter: $filter) {
    nodes { group cacheReadTokens cacheSavingsUsd cacheWriteExtraUsd netCacheSavingsUsd } }
  forecast: spendForecast(rollup: $rollup, by: $by, filter: $filter) { nodes { group periodStart periodEnd spentUsd projectedUsd } }
  anomalies: spendAnomalies(rollup: $rollup, by: $by, filter: $filter) { nodes { group requests spentUsd baselineUsd score } }
  reconcile: providedVsList(rollup: $rollup, by: $by, from: $from, to: $to, filter: $filter) {
    nodes { group providedRequests providedCostUsd listCostUsd differenceUsd differencePct } }
}`;
const dayOf = (d) => d.toISOString().slice(0, 10);
const addDays = (day, n) => dayOf(new Date(Date.parse(`${day}T00:00:00Z`) + n * 86400000));
// The range of a preset, as UTC days [from, to] (to inclusive).
function presetRange(preset, now = new Date()) {
  const today = dayOf(now);
  const monthStart = `${today.slice(0, 8)}01`;
  switch (preset) {
    case 'today': return [today, today];
    case '7d': return [addDays(today, -6), today];
    case '30d': return [addDays(today, -29), today];
    case 'last-month': return [dayOf(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1))), addDays(monthStart, -1)];
    default: return [monthStart, addDays(dayOf(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1))), -1)];
  }
}
// The one group column the breakdown panels split by: the model when the rollup has it.
const breakdownOf = (r) => (r.groupBy.includes('model') ? ['model'] : r.groupBy.slice(0, 1));

const QUERY = `query Dashboard {
  rollups: allRollups(orderBy: ID_ASC) { nodes { rollup groupBy grain source } }
  summary: allSpendSummaries { nodes { period since requests totalTokens costUsd unpricedRequests } }
  unpriced: allUnpricedModels { nodes { model rows lastSeen resolvesToNow } }
  budgets: allBudgetStatuses(orderBy: [USED_PCT_DESC, BUDGET_ASC, GROUP_ASC]) {
    nodes { budget group spentUsd limitUsd remainingUsd usedPct state periodEnd projectedUsd } }
  alerts: allBudgetAlerts(orderBy: ID_DESC, first: 10) {
    nodes { id budget group threshold spentUsd limitUsd crossedAt kind } }
  anomalyAlerts: allAnomalyAlerts(orderBy: ID_DESC, first: 10) {
    nodes { id watch group periodStart spentUsd baselineUsd score detectedAt } }
}`;
// The top 10 values of each group column of the chosen rollup over the range and filters, and the
// latest requests of llm_cost.usage_events (the filters apply when the rollup reads that table).
const topsQuery = (cols) => `query Tops($rollup: RegClass!, $from: Datetime!, $to: Datetime!, $filter: JSON!, $last: UsageEventCondition!${
  cols.map((_, i) => `, $c${i}: [String]!`).join('')}) {
  last: allUsageEvents(condition: $last, orderBy: [OCCURRED_AT_DESC, ID_DESC], first: 10) {
    nodes { id occurredAt tenantId userId feature model pricedModel provider totalTokens costUsd costSource } }
${cols.map((_, i) => `  t${i}: spendBy(rollup: $rollup, by: $c${i}, from: $from, to: $to, filter: $filter, first: 10) { nodes { group requests costUsd unpricedRequests } }`).join('\n')}
}`;
const camel = (col) => col.replace(/_([a-z0-9])/g, (_, ch) => ch.toUpperCase());
const EVENT_COLUMNS = ['tenant_id', 'user_id', 'feature', 'provider', 'model'];

// ---- rendering ------------------------------------------------------------------------------
function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'key') e.dataset.k = v;
    else e.setAttribute(k, v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}
// CSV of a table as shown (one line per row, fields quoted where needed).
function csvOf(t) {
  const q = (v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return [...t.rows].filter((r) => !r.querySelector('.empty')).map((r) => [...r.cells].map((c) => q(c.textContent)).join(',')).join('\n') + '\n';
}
function csvButton(t) {
  const box = t.parentElement.classList.contains('scroll') ? t.parentElement : t;
  let b = box.nextElementSibling;
  if (!b || !b.classList.contains('csv')) {
    b = el('button', { class: 'csv', type: 'button', 'data-csv': t.id }, 'export CSV');
    box.after(b);
  }
  b.onclick = () => {
    const a = el('a', { href: URL.createObjectURL(new Blob([csvOf(t)], { type: 'text/csv' })), download: `llm_cost-${t.id}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
  };
}
function table(id, headers, rows) {
  const t = document.getElementById(id);
  t.replaceChildren();
  csvButton(t);
  const head = el('tr');
  for (const h of headers) head.append(el('th', h.num ? { class: 'num' } : {}, h.label));
  t.append(head);
  if (rows.length === 0) {
    const tr = el('tr');
    tr.append(el('td', { class: 'empty', colspan: String(headers.length) }, 'nothing yet'));
    t.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = el('tr');
    cells.forEach((c, i) => {
      const cls = [headers[i].num ? 'num' : '', c.cls || ''].join(' ').trim();
      tr.append(el('td', { ...(cls ? { class: cls } : {}), ...(c.key ? { key: c.key } : {}) }, c.text));
    });
    t.append(tr);
  }
}
const money = (v, key) => ({ text: formatCost(v), key, cls: v === null || v === undefined ? 'unpriced' : '' });
const groupText = (g) => {
  const o = typeof g === 'string' ? JSON.parse(g) : g || {};
  const parts = Object.entries(o).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(', ') : 'all';
};
const groupKey = (g) => JSON.stringify(typeof g === 'string' ? JSON.parse(g) : g || {});

function cards(summary) {
  const box = document.getElementById('cards');
  box.replaceChildren();
  const labels = { today: 'Today', 'this week': 'This week', 'this month': 'This month' };
  const order = Object.keys(labels);
  for (const s of [...summary].sort((a, b) => order.indexOf(a.period) - order.indexOf(b.period))) {
    const priced = asNumber(s.requests) - asNumber(s.unpricedRequests);
    const card = el('div', { class: 'card' });
    const h = el('h2', {}, labels[s.period] || s.period);
    h.append(el('span', { class: 'range', key: `card:${s.period}:since` }, `since ${s.since.slice(0, 10)} (UTC)`));
    card.append(h);
    card.append(el('div', { class: 'big', key: `card:${s.period}:cost` }, formatCost(s.costUsd)));
    const dl = el('dl');
    dl.append(el('dt', {}, 'requests'), el('dd', { key: `card:${s.period}:requests` }, int(s.requests)));
    dl.append(el('dt', {}, 'average per request'), el('dd', { key: `card:${s.period}:avg` }, priced ? formatCost(divide(s.costUsd, priced)) : '–'));
    dl.append(el('dt', {}, 'unpriced calls'), el('dd', { key: `card:${s.period}:unpriced`, class: asNumber(s.unpricedRequests) ? 'unpriced' : '' }, int(s.unpricedRequests)));
    card.append(dl);
    box.append(card);
  }
}

const charts = {};
function chart(id, config) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), config);
}

function render(d) {
  cards(d.summary.nodes);

  table('unpriced', [{ label: 'model' }, { label: 'calls', num: true }, { label: 'last seen (UTC)' }, { label: 'priced now as' }],
    d.unpriced.nodes.map((u) => [{ text: u.model, cls: 'unpriced' }, { text: int(u.rows), key: `unpriced:${u.model}:rows` },
      { text: (u.lastSeen || '').replace('T', ' ').slice(0, 19) }, { text: u.resolvesToNow || '–' }]));

  table('budgets', [{ label: 'budget' }, { label: 'group' }, { label: 'spent', num: true }, { label: 'limit', num: true },
    { label: 'used', num: true }, { label: 'state' }, { label: 'projected', num: true }],
  d.budgets.nodes.map((b) => {
    const k = `budget:${b.budget}/${groupKey(b.group)}`;
    return [{ text: b.budget }, { text: groupText(b.group) }, money(b.spentUsd, `${k}:spent`), money(b.limitUsd, `${k}:limit`),
      { text: `${b.usedPct}%`, key: `${k}:used` }, { text: b.state, key: `${k}:state`, cls: `state-${b.state}` },
      { text: b.projectedUsd === null ? '–' : formatCost(b.projectedUsd), key: `${k}:projected` }];
  }));
  table('alerts', [{ label: 'crossed (UTC)' }, { label: 'budget' }, { label: 'group' }, { label: 'threshold', num: true }, { label: 'spent', num: true }],
    d.alerts.nodes.map((a) => [{ text: a.crossedAt.replace('T', ' ').slice(0, 19) }, { text: a.budget }, { text: groupText(a.group) },
      { text: a.kind === 'projected' ? 'on track to exceed' : `${Math.round(Number(a.threshold) * 100)}%`, key: `alert:${a.id}:threshold` }, money(a.spentUsd, `alert:${a.id}:spent`)]));

  table('anomaly-alerts', [{ label: 'found (UTC)' }, { label: 'watch' }, { label: 'group' }, { label: 'spent', num: true }, { label: 'baseline', num: true },
    { label: 'score', num: true }],
  d.anomalyAlerts.nodes.map((a) => [{ text: a.detectedAt.replace('T', ' ').slice(0, 19) }, { text: a.watch }, { text: groupText(a.group) },
    money(a.spentUsd, `anomaly:${a.id}:spent`), money(a.baselineUsd, `anomaly:${a.id}:baseline`),
    { text: a.score === null ? 'new' : a.score, key: `anomaly:${a.id}:score` }]));

  document.getElementById('status').textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
}

function rangeLabel(from, to) {
  const text = from === to ? from : `${from} – ${to}`;
  document.querySelectorAll('.range-label').forEach((e) => { e.textContent = `(${text}, UTC)`; });
  return text;
}

// The controls: range preset and dates, rollup, a filter per group column (values seen in range).
function controls(rollups) {
  const preset = document.getElementById('range-preset');
  const from = document.getElementById('range-from');
  const to = document.getElementById('range-to');
  if (state.preset !== 'custom' || !state.from || !state.to) [state.from, state.to] = presetRange(state.preset);
  preset.value = state.preset;
  from.value = state.from;
  to.value = state.to;
  preset.onchange = () => { state.preset = preset.value; if (state.preset !== 'custom') [state.from, state.to] = presetRange(state.preset); loadInsights(rollups); };
  const custom = () => {
    if (!from.value || !to.value) return;
    state.preset = 'custom'; state.from = from.value; state.to = to.value < from.value ? from.value : to.value;
    loadInsights(rollups);
  };
  from.onchange = custom;
  to.onchange = custom;
  const pick = document.getElementById('rollup-pick');
  const names = rollups.map((r) => r.rollup);
  if (!chosenRollup || !names.includes(chosenRollup)) chosenRollup = names[0];
  if (pick.options.length !== names.length || [...pick.options].some((o, i) => o.value !== names[i])) {
    pick.replaceChildren(...rollups.map((r) => el('option', { value: r.rollup }, `${r.rollup} (per ${r.grain}: ${r.groupBy.join(', ') || 'all'})`)));
  }
  pick.onchange = () => { chosenRollup = pick.value; state.filter = {}; loadInsights(rollups); };
  pick.value = chosenRollup;
}

function filterSelects(r, groups) {
  const box = document.getElementById('filters');
  box.replaceChildren();
  for (const col of r.groupBy) {
    const values = [...new Set(groups.map((g) => (typeof g.group === 'string' ? JSON.parse(g.group) : g.group)[col]))]
      .map((v) => (v === null || v === undefined ? '' : String(v))).sort();
    const sel = el('select', { 'aria-label': `filter ${col}`, 'data-col': col });
    sel.append(el('option', { value: '*' }, 'all'));
    for (const v of values) sel.append(el('option', { value: v }, v === '' ? '(none)' : v));
    if (state.filter[col] !== undefined && !values.includes(state.filter[col])) sel.append(el('option', { value: state.filter[col] }, state.filter[col]));
    sel.value = state.filter[col] === undefined ? '*' : state.filter[col];
    sel.onchange = () => {
      if (sel.value === '*') delete state.filter[col]; else state.filter[col] = sel.value;
      loadInsights(currentRollups);
    };
    const label = el('label', {}, `${col} `);
    label.append(sel);
    box.append(label);
  }
}

// The filter as llm_cost's report functions take it: '' (shown as "(none)") is NULL.
const filterArg = () => JSON.stringify(Object.fromEntries(Object.entries(state.filter).map(([k, v]) => [k, v === '' ? null : v])));

let currentRollups = [];
async function loadInsights(rollups) {
  currentRollups = rollups;
  controls(rollups);
  const r = rollups.find((x) => x.rollup === chosenRollup);
  const note = document.getElementById('rollup-note');
  const ids = ['range-trend-table', 'rollup', 'percentiles', 'cache', 'latency', 'forecast', 'anomalies', 'reconcile'];
  const clear = () => {
    ids.forEach((id) => table(id, [{ label: 'group' }], []));
    document.getElementById('range-cards').replaceChildren();
    document.getElementById('tops').replaceChildren();
  };
  if (!r) {
    note.textContent = 'no rollup yet: llm_cost.create_rollup()';
    clear();
    return;
  }
  const label = rangeLabel(state.from, state.to);
  const by = breakdownOf(r);
  const vars = {
    rollup: r.rollup, by, all: r.groupBy, filter: filterArg(),
    from: `${state.from}T00:00:00Z`, to: `${addDays(state.to, 1)}T00:00:00Z`,
  };
  let d;
  try {
    d = await gql(INSIGHTS, vars);
  } catch (e) {
    // A rollup this token may not read (row security decides the rows; grants decide the view).
    note.textContent = `not readable with this token: ${e.message}`;
    clear();
    return;
  }
  note.textContent = by.length ? `Panels split by ${by[0]}.` : '';
  // The filter's choices: every value in range, not only the filtered ones.
  const all = d.choices.nodes;
  filterSelects(r, all);
  const rk = `r:${r.rollup}`;

  // Cards: the range's spend, what caching saved, what failures cost, the latency.
  const t = d.total.nodes[0] || {};
  const cardsBox = document.getElementById('range-cards');
  cardsBox.replaceChildren();
  const card = (title, key, value, rows) => {
    const c = el('div', { class: 'card' });
    const h = el('h2', {}, title);
    h.append(el('span', { class: 'range' }, `${label} (UTC)`));
    c.append(h, el('div', { class: 'big', key }, value));
    const dl = el('dl');
    for (const [dt, k, v, cls] of rows) dl.append(el('dt', {}, dt), el('dd', { key: k, ...(cls ? { class: cls } : {}) }, v));
    c.append(dl);
    cardsBox.append(c);
  };
  const priced = asNumber(t.requests) - asNumber(t.unpricedRequests);
  card('Spend', `${rk}:cost`, t.requests ? formatCost(t.costUsd) : '$0.00', [
    ['requests', `${rk}:requests`, int(t.requests || 0)],
    ['average per request', `${rk}:avg`, priced ? formatCost(divide(t.costUsd, priced)) : '–'],
    ['unpriced calls', `${rk}:unpriced`, int(t.unpricedRequests || 0), asNumber(t.unpricedRequests) ? 'unpriced' : '']]);
  const ct = d.cacheTotal.nodes[0] || {};
  card('Saved by prompt caching', `${rk}:cache-net`, formatCost(ct.netCacheSavingsUsd || '0'), []);
  card('Failed calls', `${rk}:error-cost`, t.errorRequests === null || t.errorRequests === undefined ? '–' : formatCost(t.errorCostUsd || '0'),
    [['failed calls', `${rk}:errors`, t.errorRequests === null || t.errorRequests === undefined ? '–' : int(t.errorRequests)]]);
  card('Latency', `${rk}:latency-avg`, t.latencyMsAvg === null || t.latencyMsAvg === undefined ? '–' : `${t.latencyMsAvg} ms`,
    [['longest', `${rk}:latency-max`, t.latencyMsMax === null || t.latencyMsMax === undefined ? '–' : `${int(t.latencyMsMax)} ms`]]);

  const trend = d.trend.nodes;
  chart('range-trend', {
    type: 'bar',
    data: { labels: trend.map((n) => n.periodStart.slice(0, r.grain === 'hour' ? 16 : 10).replace('T', ' ')),
      datasets: [{ label: 'cost (USD)', data: trend.map((n) => Number(n.costUsd || 0)), backgroundColor: '#3b6fd8' }] },
    options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
  });
  table('range-trend-table', [{ label: 'period start (UTC)' }, { label: 'requests', num: true }, { label: 'cost', num: true }, { label: 'unpriced', num: true }],
    [...trend].reverse().map((n) => {
      const k = `${rk}:trend:${n.periodStart.slice(0, 16)}`;
      return [{ text: n.periodStart.replace('T', ' ').slice(0, 16) }, { text: int(n.requests), key: `${k}:requests` }, money(n.costUsd, `${k}:cost`),
        { text: int(n.unpricedRequests), key: `${k}:unpriced` }];
    }));

  table('rollup', [{ label: 'group' }, { label: 'requests', num: true }, { label: 'cost', num: true }, { label: 'unpriced', num: true }],
    d.groups.nodes.map((g) => {
      const k = `rollup:${r.rollup}/${groupKey(g.group)}`;
      return [{ text: groupText(g.group) }, { text: int(g.requests), key: `${k}:requests` }, money(g.costUsd, `${k}:cost`),
        { text: int(g.unpricedRequests), key: `${k}:unpriced` }];
    }));

  const who = by.length ? by[0] : 'group';
  table('percentiles', [{ label: who }, { label: 'priced', num: true }, { label: 'p50', num: true }, { label: 'p90', num: true },
    { label: 'p99', num: true }, { label: 'max', num: true }],
  d.pct.nodes.map((p) => {
    const k = `${rk}:pct:${groupKey(p.group)}`;
    return [{ text: groupText(p.group) }, { text: int(p.pricedRequests), key: `${k}:n` },
      ...p.costUsd.map((v, i) => money(v, `${k}:${['p50', 'p90', 'p99'][i]}`)), money(p.maxUsd, `${k}:max`)];
  }));
  table('cache', [{ label: who }, { label: 'cache reads', num: true }, { label: 'saved', num: true }, { label: 'writes cost', num: true },
    { label: 'net', num: true }],
  d.cache.nodes.filter((c) => asNumber(c.cacheReadTokens) || Number(c.cacheWriteExtraUsd) || Number(c.cacheSavingsUsd)).map((c) => {
    const k = `${rk}:cache:${groupKey(c.group)}`;
    return [{ text: groupText(c.group) }, { text: int(c.cacheReadTokens), key: `${k}:reads` }, money(c.cacheSavingsUsd, `${k}:saved`),
      money(c.cacheWriteExtraUsd, `${k}:extra`), money(c.netCacheSavingsUsd, `${k}:net`)];
  }));
  table('latency', [{ label: who }, { label: 'requests', num: true }, { label: 'mean', num: true }, { label: 'longest', num: true },
    { label: 'failed', num: true }, { label: 'failed cost', num: true }],
  d.breakdown.nodes.map((b) => {
    const k = `${rk}:lat:${groupKey(b.group)}`;
    return [{ text: groupText(b.group) }, { text: int(b.requests), key: `${k}:requests` },
      { text: b.latencyMsAvg === null ? '–' : `${b.latencyMsAvg} ms`, key: `${k}:avg` },
      { text: b.latencyMsMax === null ? '–' : `${int(b.latencyMsMax)} ms`, key: `${k}:max` },
      { text: b.errorRequests === null ? '–' : int(b.errorRequests), key: `${k}:errors` },
      b.errorRequests === null ? { text: '–', key: `${k}:error-cost` } : money(b.errorCostUsd, `${k}:error-cost`)];
  }));
  table('forecast', [{ label: who }, { label: 'period' }, { label: 'spent', num: true }, { label: 'projected', num: true }],
    d.forecast.nodes.map((f) => {
      const k = `${rk}:fc:${groupKey(f.group)}`;
      return [{ text: groupText(f.group) }, { text: `${f.periodStart.slice(0, 10)} – ${f.periodEnd.slice(0, 10)}` }, money(f.spentUsd, `${k}:spent`),
        { text: f.projectedUsd === null ? '–' : formatCost(f.projectedUsd), key: `${k}:projected` }];
    }));
  table('anomalies', [{ label: who }, { label: 'calls', num: true }, { label: 'spent', num: true }, { label: 'baseline', num: true }, { label: 'score', num: true }],
    d.anomalies.nodes.map((a) => {
      const k = `${rk}:anom:${groupKey(a.group)}`;
      return [{ text: groupText(a.group) }, { text: int(a.requests), key: `${k}:requests` }, money(a.spentUsd, `${k}:spent`),
        money(a.baselineUsd, `${k}:baseline`), { text: a.score === null ? 'new' : a.score, key: `${k}:score` }];
    }));
  table('reconcile', [{ label: who }, { label: 'calls', num: true }, { label: 'provided', num: true }, { label: 'list price', num: true }, { label: 'difference', num: true }],
    d.reconcile.nodes.map((x) => {
      const k = `${rk}:rec:${groupKey(x.group)}`;
      return [{ text: groupText(x.group) }, { text: int(x.providedRequests), key: `${k}:requests` }, money(x.providedCostUsd, `${k}:provided`),
        money(x.listCostUsd, `${k}:list`), { text: x.differencePct === null ? formatCost(x.differenceUsd) : `${formatCost(x.differenceUsd)} (${x.differencePct}%)`, key: `${k}:diff` }];
    }));

  // The top 10 of each group column, and the latest requests under the same filters.
  const ofEvents = r.source === 'llm_cost.usage_events';
  const last = ofEvents ? Object.fromEntries(Object.entries(state.filter).filter(([k]) => EVENT_COLUMNS.includes(k))
    .map(([k, v]) => [camel(k), v === '' ? null : v])) : {};
  const tv = { rollup: r.rollup, from: vars.from, to: vars.to, filter: vars.filter, last };
  r.groupBy.forEach((col, i) => { tv[`c${i}`] = [col]; });
  let t2;
  try {
    t2 = await gql(topsQuery(r.groupBy), tv);
  } catch (e) {
    note.textContent = `not readable with this token: ${e.message}`;
    return;
  }
  document.getElementById('last-note').textContent = ofEvents
    ? (Object.keys(last).length ? 'Of llm_cost.usage_events, the filters above applied, whatever the range.' : 'Of llm_cost.usage_events, whatever the range.')
    : 'Of llm_cost.usage_events, whatever the range (the filters are those of another table).';
  table('last', [{ label: 'when (UTC)' }, { label: 'tenant' }, { label: 'user' }, { label: 'feature' }, { label: 'model sent' },
    { label: 'priced as' }, { label: 'tokens', num: true }, { label: 'cost', num: true }],
  t2.last.nodes.map((x) => [
    { text: x.occurredAt.replace('T', ' ').slice(0, 19) }, { text: x.tenantId || '' }, { text: x.userId || '' }, { text: x.feature || '' },
    { text: x.model, key: `last:${x.id}:model` }, { text: x.pricedModel || '', key: `last:${x.id}:priced` },
    { text: int(x.totalTokens), key: `last:${x.id}:tokens` }, money(x.costUsd, `last:${x.id}:cost`),
  ]));
  const box = document.getElementById('tops');
  box.replaceChildren();
  r.groupBy.forEach((col, i) => {
    const panel = el('section', { class: 'panel' });
    const h = el('h2', {}, `Top ${col} `);
    h.append(el('span', { class: 'range-label' }, `(${label}, UTC)`));
    panel.append(h);
    const nodes = t2[`t${i}`].nodes;
    if (col === by[0]) {
      const cbox = el('div', { class: 'chart-box' });
      cbox.append(el('canvas', { id: 'top-chart' }));
      panel.append(cbox);
    }
    const scroll = el('div', { class: 'scroll' });
    scroll.append(el('table', { id: `top-${i}` }));
    panel.append(scroll);
    box.append(panel);
    table(`top-${i}`, [{ label: col }, { label: 'requests', num: true }, { label: 'cost', num: true }, { label: 'unpriced', num: true }],
      nodes.map((g) => {
        const v = (typeof g.group === 'string' ? JSON.parse(g.group) : g.group)[col];
        const k = `top:${col}/${v === null || v === undefined ? '' : v}`;
        return [{ text: v === null || v === undefined ? '(none)' : String(v) }, { text: int(g.requests), key: `${k}:requests` },
          money(g.costUsd, `${k}:cost`), { text: int(g.unpricedRequests), key: `${k}:unpriced`, cls: asNumber(g.unpricedRequests) ? 'unpriced' : '' }];
      }));
    if (col === by[0]) {
      chart('top-chart', {
        type: 'bar',
        data: { labels: nodes.map((g) => String((typeof g.group === 'string' ? JSON.parse(g.group) : g.group)[col])),
          datasets: [{ data: nodes.map((g) => Number(g.costUsd || 0)), backgroundColor: '#6a8fe0' }] },
        options: { indexAxis: 'y', animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } } },
      });
    }
  });
}

async function load() {
  try {
    if (!token) throw new Error('no token: open the URL scripts/demo.sh printed (…/#token=…)');
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    document.getElementById('who').textContent = payload.user_id ? `${payload.user_id} (${payload.role})` : payload.role;
    const data = await gql(QUERY, {});
    render(data);
    await loadInsights(data.rollups.nodes);
    document.body.dataset.ready = '1';
  } catch (e) {
    document.getElementById('status').textContent = `error: ${e.message}`;
    document.body.dataset.ready = 'error';
    document.body.dataset.error = e.message;
  }
}

window.llmCostFormatCost = formatCost; // for the browser test
window.llmCostCsv = (id) => csvOf(document.getElementById(id));
load();
setInterval(load, 30000);
