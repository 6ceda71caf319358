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

// Any rollup the token may read (yours too): its spend this month per group, through
// llm_cost.spend_by (the reader's row-level security applies). Chosen with #rollup=<name>.
const ROLLUP_QUERY = `query Rollup($rollup: RegClass!, $by: [String]!, $month: Datetime!) {
  rows: spendBy(rollup: $rollup, by: $by, from: $month) { nodes { group requests costUsd unpricedRequests } }
}`;
let chosenRollup = new URLSearchParams(location.hash.slice(1)).get('rollup');

const QUERY = `query Dashboard($month: Datetime!) {
  rollups: allRollups(orderBy: ID_ASC) { nodes { rollup groupBy grain } }
  summary: allSpendSummaries { nodes { period since requests totalTokens costUsd unpricedRequests } }
  models: allSpendByModels(condition: {month: $month}, orderBy: [COST_USD_DESC, MODEL_ASC]) {
    nodes { provider model requests costUsd avgCostPerRequestUsd unpricedRequests } }
  features: allSpendByFeatures(condition: {month: $month}, orderBy: [COST_USD_DESC, FEATURE_ASC]) {
    nodes { tenantId feature requests costUsd avgCostPerRequestUsd } }
  trend: allDailyTrends(orderBy: DAY_ASC) { nodes { day requests costUsd unpricedRequests } }
  users: allTopUsers(condition: {month: $month}, orderBy: [SPEND_RANK_ASC, USER_ID_ASC], first: 10) {
    nodes { tenantId userId requests costUsd spendRank } }
  last: allUsageEvents(orderBy: ID_DESC, first: 10) {
    nodes { id occurredAt tenantId userId feature model pricedModel provider totalTokens costUsd costSource } }
  unpriced: allUnpricedModels { nodes { model rows lastSeen resolvesToNow } }
  budgets: allBudgetStatuses(orderBy: [BUDGET_ASC, GROUP_ASC]) {
    nodes { budget group spentUsd limitUsd remainingUsd usedPct state periodEnd } }
  alerts: allBudgetAlerts(orderBy: ID_DESC, first: 10) {
    nodes { id budget group threshold spentUsd limitUsd crossedAt } }
}`;

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
function table(id, headers, rows) {
  const t = document.getElementById(id);
  t.replaceChildren();
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
    card.append(el('h2', {}, labels[s.period] || s.period));
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

function render(d, monthStart) {
  cards(d.summary.nodes);

  // Daily trend: the last 30 days, days without calls at zero.
  const byDay = new Map(d.trend.nodes.map((n) => [n.day.slice(0, 10), n]));
  const days = [];
  const end = new Date();
  for (let i = 29; i >= 0; i -= 1) {
    const t = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth(), end.getUTCDate() - i));
    days.push(t.toISOString().slice(0, 10));
  }
  chart('trend', {
    type: 'bar',
    data: {
      labels: days.map((x) => x.slice(5)),
      datasets: [{ label: 'cost (USD)', data: days.map((x) => (byDay.get(x) ? Number(byDay.get(x).costUsd || 0) : 0)), backgroundColor: '#3b6fd8' }],
    },
    options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
  });
  table('trend-table', [{ label: 'day' }, { label: 'requests', num: true }, { label: 'cost', num: true }, { label: 'unpriced', num: true }],
    d.trend.nodes.slice(-30).reverse().map((n) => [
      { text: n.day.slice(0, 10) },
      { text: int(n.requests), key: `trend:${n.day.slice(0, 10)}:requests` },
      money(n.costUsd, `trend:${n.day.slice(0, 10)}:cost`),
      { text: int(n.unpricedRequests), key: `trend:${n.day.slice(0, 10)}:unpriced` },
    ]));

  const models = d.models.nodes;
  chart('model-chart', {
    type: 'bar',
    data: { labels: models.map((m) => m.model), datasets: [{ data: models.map((m) => Number(m.costUsd || 0)), backgroundColor: '#6a8fe0' }] },
    options: { indexAxis: 'y', animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } } },
  });
  table('models', [{ label: 'model' }, { label: 'provider' }, { label: 'requests', num: true }, { label: 'cost', num: true },
    { label: 'avg / request', num: true }, { label: 'unpriced', num: true }],
  models.map((m) => {
    const k = `model:${m.provider || ''}/${m.model}`;
    return [{ text: m.model }, { text: m.provider || '' }, { text: int(m.requests), key: `${k}:requests` }, money(m.costUsd, `${k}:cost`),
      { text: m.avgCostPerRequestUsd === null ? '–' : formatCost(m.avgCostPerRequestUsd), key: `${k}:avg` },
      { text: int(m.unpricedRequests), key: `${k}:unpriced`, cls: asNumber(m.unpricedRequests) ? 'unpriced' : '' }];
  }));

  table('features', [{ label: 'tenant' }, { label: 'feature' }, { label: 'requests', num: true }, { label: 'cost', num: true }],
    d.features.nodes.map((f) => {
      const k = `feature:${f.tenantId || ''}/${f.feature || ''}`;
      return [{ text: f.tenantId || '' }, { text: f.feature || '' }, { text: int(f.requests), key: `${k}:requests` }, money(f.costUsd, `${k}:cost`)];
    }));

  table('users', [{ label: '#', num: true }, { label: 'tenant' }, { label: 'user' }, { label: 'requests', num: true }, { label: 'cost', num: true }],
    d.users.nodes.map((u) => {
      const k = `user:${u.tenantId || ''}/${u.userId}`;
      return [{ text: String(u.spendRank) }, { text: u.tenantId || '' }, { text: u.userId }, { text: int(u.requests), key: `${k}:requests` }, money(u.costUsd, `${k}:cost`)];
    }));

  table('last', [{ label: 'when (UTC)' }, { label: 'tenant' }, { label: 'user' }, { label: 'feature' }, { label: 'model sent' },
    { label: 'priced as' }, { label: 'tokens', num: true }, { label: 'cost', num: true }],
  d.last.nodes.map((r) => [
    { text: r.occurredAt.replace('T', ' ').slice(0, 19) }, { text: r.tenantId || '' }, { text: r.userId || '' }, { text: r.feature || '' },
    { text: r.model, key: `last:${r.id}:model` }, { text: r.pricedModel || '', key: `last:${r.id}:priced` },
    { text: int(r.totalTokens), key: `last:${r.id}:tokens` }, money(r.costUsd, `last:${r.id}:cost`),
  ]));

  table('unpriced', [{ label: 'model' }, { label: 'calls', num: true }, { label: 'last seen (UTC)' }, { label: 'priced now as' }],
    d.unpriced.nodes.map((u) => [{ text: u.model, cls: 'unpriced' }, { text: int(u.rows), key: `unpriced:${u.model}:rows` },
      { text: (u.lastSeen || '').replace('T', ' ').slice(0, 19) }, { text: u.resolvesToNow || '–' }]));

  table('budgets', [{ label: 'budget' }, { label: 'group' }, { label: 'spent', num: true }, { label: 'limit', num: true },
    { label: 'used', num: true }, { label: 'state' }],
  d.budgets.nodes.map((b) => {
    const k = `budget:${b.budget}/${groupKey(b.group)}`;
    return [{ text: b.budget }, { text: groupText(b.group) }, money(b.spentUsd, `${k}:spent`), money(b.limitUsd, `${k}:limit`),
      { text: `${b.usedPct}%`, key: `${k}:used` }, { text: b.state, key: `${k}:state`, cls: `state-${b.state}` }];
  }));
  table('alerts', [{ label: 'crossed (UTC)' }, { label: 'budget' }, { label: 'group' }, { label: 'threshold', num: true }, { label: 'spent', num: true }],
    d.alerts.nodes.map((a) => [{ text: a.crossedAt.replace('T', ' ').slice(0, 19) }, { text: a.budget }, { text: groupText(a.group) },
      { text: `${Math.round(Number(a.threshold) * 100)}%`, key: `alert:${a.id}:threshold` }, money(a.spentUsd, `alert:${a.id}:spent`)]));

  document.getElementById('status').textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC · month from ${monthStart.slice(0, 10)}`;
}

async function loadRollup(rollups, month) {
  const pick = document.getElementById('rollup-pick');
  const names = rollups.map((r) => r.rollup);
  if (!chosenRollup || !names.includes(chosenRollup)) chosenRollup = names[0];
  if (pick.options.length !== names.length || [...pick.options].some((o, i) => o.value !== names[i])) {
    pick.replaceChildren(...rollups.map((r) => el('option', { value: r.rollup }, `${r.rollup} (per ${r.grain}: ${r.groupBy.join(', ') || 'all'})`)));
    pick.onchange = () => { chosenRollup = pick.value; loadRollup(rollups, month); };
  }
  pick.value = chosenRollup;
  const r = rollups.find((x) => x.rollup === chosenRollup);
  const note = document.getElementById('rollup-note');
  if (!r) {
    note.textContent = 'no rollup yet: llm_cost.create_rollup()';
    table('rollup', [{ label: 'group' }], []);
    return;
  }
  try {
    const data = await gql(ROLLUP_QUERY, { rollup: r.rollup, by: r.groupBy, month });
    note.textContent = '';
    table('rollup', [{ label: 'group' }, { label: 'requests', num: true }, { label: 'cost', num: true }, { label: 'unpriced', num: true }],
      data.rows.nodes.map((g) => {
        const k = `rollup:${r.rollup}/${groupKey(g.group)}`;
        return [{ text: groupText(g.group) }, { text: int(g.requests), key: `${k}:requests` }, money(g.costUsd, `${k}:cost`),
          { text: int(g.unpricedRequests), key: `${k}:unpriced` }];
      }));
  } catch (e) {
    // A rollup this token may not read (row security decides the rows; grants decide the view).
    note.textContent = `not readable with this token: ${e.message}`;
    table('rollup', [{ label: 'group' }], []);
  }
}

async function load() {
  try {
    if (!token) throw new Error('no token: open the URL scripts/demo.sh printed (…/#token=…)');
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    document.getElementById('who').textContent = payload.user_id ? `${payload.user_id} (${payload.role})` : payload.role;
    const now = new Date();
    const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
    const data = await gql(QUERY, { month });
    render(data, month);
    await loadRollup(data.rollups.nodes, month);
    document.body.dataset.ready = '1';
  } catch (e) {
    document.getElementById('status').textContent = `error: ${e.message}`;
    document.body.dataset.ready = 'error';
    document.body.dataset.error = e.message;
  }
}

window.llmCostFormatCost = formatCost; // for the browser test
load();
setInterval(load, 30000);
