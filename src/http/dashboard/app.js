// The IP-office dashboard. It calls the server's JSON API (`POST /api/<service>/<method>`, the
// gRPC methods in proto3 JSON) with the viewer's own token, so it shows exactly what that token
// may see: a bank its own book, an office its region. No framework and no third-party code: the
// page must load from the binary alone, behind an office's firewall.
'use strict';

const TOKEN_KEY = 'ipledger.token';
/// Pledgees listed at most; the rest are in the region's total.
const TOP_PLEDGEES_MAX = 10;
/// Year-ends shown in the trend, before today.
const TREND_YEARS = 9;

/// The risk side's labels, each in this one place: the totals and both tables take theirs from
/// here (the rest of the page's text is in index.html), so a translation changes one line each.
const LABELS = {
  risk: 'Risk',
  atRisk: 'At risk (yuan)',
  atRiskCount: 'Pledges at risk',
  defaulted: 'Defaulted (yuan)',
  nonPerforming: 'Non-performing ratio',
  appraised: 'Appraised value (yuan)',
  loanToValue: 'Loan-to-value',
  compensation: 'Compensation claimed / paid (yuan)',
  budget: 'Programme budget left / budget (yuan)',
  budgetLeft: 'Programme budget left (yuan)',
};

const $ = (id) => document.getElementById(id);
/// Region code -> name, from every answer seen (the breadcrumb needs the names of ancestors).
const regionNames = new Map();
/// Answers to an older navigation are dropped: only the latest one renders.
let navigation = 0;

class ApiError extends Error {
  constructor(json, status) {
    super(json.message || `HTTP ${status}`);
    this.code = json.code || String(status);
    const info = (json.details || []).find((d) => d.type === 'google.rpc.ErrorInfo');
    this.reason = info && info.debug ? info.debug.reason : undefined;
  }
}

async function call(method, body) {
  const response = await fetch(`/api/${method}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ''}`,
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { message: text };
  }
  if (!response.ok) throw new ApiError(json, response.status);
  return json;
}

const exposure = (regionCode, groupBy, asOf) =>
  call('ipledger.v1.ExposureService/GetExposure', { regionCode, groupBy, asOf });

// Amounts arrive as exact decimal strings; they are shown exactly, grouped by thousands.
function groupDigits(text) {
  const [whole, fraction] = String(text).split('.');
  const sign = whole.startsWith('-') ? '-' : '';
  const grouped = whole.replace('-', '').replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return sign + grouped + (fraction === undefined ? '' : `.${fraction}`);
}
const yuan = (amount) => (amount ? groupDigits(amount) : '0.00');
// uint64 fields are strings in proto3 JSON and are omitted when zero.
const count = (n) => groupDigits(n || '0');
// Bars and percentages only need to be approximately right; the figures beside them are exact.
const approx = (value) => Number(value || 0);

// Risk figures are empty where they do not apply (no appraisal, no secured amount, a bank's
// programme budget): shown as a dash, never as a zero that would claim something.
const optional = (amount) => (amount ? groupDigits(amount) : '–');
const percent = (value) => (value ? `${value} %` : '–');
const pair = (a, b) => (a || b ? `${optional(a)} / ${optional(b)}` : '–');
const nonZero = (amount) => approx(amount) !== 0;

/// The risk columns of both tables, in order; `warn` marks a cell that needs attention.
const RISK_COLUMNS = [
  {
    label: LABELS.atRisk,
    className: 'at-risk',
    cell: (r) => optional(r.atRiskAmount),
    warn: (r) => nonZero(r.atRiskAmount),
  },
  {
    label: LABELS.defaulted,
    className: 'defaulted',
    cell: (r) => optional(r.defaultedAmount),
    warn: (r) => nonZero(r.defaultedAmount),
  },
  { label: LABELS.nonPerforming, className: 'npl', cell: (r) => percent(r.nonPerformingPercent) },
  { label: LABELS.loanToValue, className: 'ltv', cell: (r) => percent(r.loanToValuePercent) },
  {
    label: LABELS.compensation,
    className: 'compensation',
    cell: (r) => pair(r.compensationClaimed, r.compensationPaid),
  },
];
/// Programmes belong to regions: the region table only.
const REGION_RISK_COLUMNS = [
  ...RISK_COLUMNS,
  { label: LABELS.budgetLeft, className: 'budget-left', cell: (r) => optional(r.programmeBudgetLeft) },
];

/// The risk cards of the totals; a card whose figure is `undefined` does not apply and is hidden.
const RISK_CARDS = [
  { id: 'total-at-risk', label: LABELS.atRisk, value: (t) => optional(t.atRiskAmount) },
  { id: 'total-at-risk-count', label: LABELS.atRiskCount, value: (t) => count(t.atRiskCount) },
  { id: 'total-defaulted', label: LABELS.defaulted, value: (t) => optional(t.defaultedAmount) },
  { id: 'total-npl', label: LABELS.nonPerforming, value: (t) => percent(t.nonPerformingPercent) },
  { id: 'total-appraised', label: LABELS.appraised, value: (t) => optional(t.appraisedValue) },
  { id: 'total-ltv', label: LABELS.loanToValue, value: (t) => percent(t.loanToValuePercent) },
  {
    id: 'total-compensation',
    label: LABELS.compensation,
    value: (t) => pair(t.compensationClaimed, t.compensationPaid),
  },
  // Offices and admins only: a bank's answer has no budget.
  {
    id: 'total-budget',
    label: LABELS.budget,
    value: (t) => (t.programmeBudget ? pair(t.programmeBudgetLeft, t.programmeBudget) : undefined),
  },
];

function utilisation(row) {
  const limit = approx(row.creditLimit);
  if (!row.creditLimit || limit === 0) return '–';
  return `${((100 * approx(row.creditDrawn)) / limit).toFixed(1)} %`;
}

function element(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

/// A cell with the exact figure and a bar of `value / max`.
function barCell(label, value, max, className) {
  const cell = element('td', undefined, `bar-cell ${className}`);
  const line = element('div', undefined, 'bar-line');
  const bar = element('div', undefined, 'bar');
  const fill = element('span');
  fill.style.width = `${max > 0 ? Math.max(0, Math.min(100, (100 * value) / max)) : 0}%`;
  bar.append(fill);
  line.append(element('span', label, 'figure'), bar);
  cell.append(line);
  return cell;
}

/// The risk cells of a row, one per column.
const riskCells = (row, columns) =>
  columns.map((c) => {
    const warn = c.warn && c.warn(row) ? ' warn' : '';
    return element('td', c.cell(row), `number risk ${c.className}${warn}`);
  });

/// Builds the parts of the page whose labels live in LABELS: the risk headers and cards.
function buildRiskParts() {
  const headers = (table, columns) => {
    const tr = $(table).querySelector('thead tr');
    for (const c of columns) tr.append(element('th', c.label, `number risk ${c.className}`));
  };
  headers('regions', REGION_RISK_COLUMNS);
  headers('pledgees', RISK_COLUMNS);
  $('risk-heading').textContent = LABELS.risk;
  $('risk-cards').replaceChildren(
    ...RISK_CARDS.map((c) => {
      const card = element('div', undefined, 'card');
      card.id = `${c.id}-card`;
      const figure = element('p');
      figure.id = c.id;
      card.append(element('h3', c.label), figure);
      return card;
    }),
  );
}

const isCounty = (code) => /^\d{4}(?!00)\d{2}$/.test(code);

/// The drill-down path from the URL: `#/330000/330100` (regions below the token's scope root).
function currentPath() {
  return location.hash.replace(/^#\/?/, '').split('/').filter((c) => /^\d{6}$/.test(c));
}
const pathHash = (path) => `#/${path.join('/')}`;

function showError(error) {
  const box = $('error');
  box.textContent = error.reason ? `${error.reason}: ${error.message}` : `${error.code || 'error'}: ${error.message}`;
  box.hidden = false;
  document.body.dataset.state = 'error';
}

function renderTotals(total) {
  $('total-secured').textContent = yuan(total.securedAmount);
  $('total-pledges').textContent = count(total.pledgeCount);
  $('total-enterprises').textContent = count(total.enterpriseCount);
  $('total-rights').textContent = count(total.rightCount);
  $('total-credit').textContent = `${yuan(total.creditDrawn)} / ${yuan(total.creditLimit)}`;
  $('total-utilisation').textContent = utilisation(total);
  for (const c of RISK_CARDS) {
    const value = c.value(total);
    $(`${c.id}-card`).hidden = value === undefined;
    $(c.id).textContent = value === undefined ? '' : value;
  }
}

function renderCrumbs(rootName, path) {
  const nav = $('crumbs');
  nav.replaceChildren();
  const link = (name, hash, current) => {
    const a = element('a', name);
    a.href = hash;
    if (current) a.setAttribute('aria-current', 'page');
    return a;
  };
  nav.append(link(rootName, '#/', path.length === 0));
  path.forEach((code, i) => {
    nav.append(element('span', '›', 'sep'), link(regionNames.get(code) || code, pathHash(path.slice(0, i + 1)), i === path.length - 1));
  });
}

function renderRegions(answer, path) {
  const body = $('regions').querySelector('tbody');
  body.replaceChildren();
  const rows = (answer.rows || []).slice().sort((a, b) => approx(b.securedAmount) - approx(a.securedAmount));
  $('by-region').hidden = rows.length === 0;
  const maxAmount = Math.max(0, ...rows.map((r) => approx(r.securedAmount)));
  const maxCount = Math.max(0, ...rows.map((r) => approx(r.pledgeCount)));
  for (const row of rows) {
    regionNames.set(row.key, row.name);
    const tr = element('tr');
    tr.dataset.key = row.key;
    const name = element('td', undefined, 'name');
    if (isCounty(row.key)) {
      name.textContent = row.name;
    } else {
      const a = element('a', row.name);
      a.href = pathHash([...path, row.key]);
      a.dataset.key = row.key;
      name.append(a);
    }
    tr.append(
      name,
      barCell(yuan(row.securedAmount), approx(row.securedAmount), maxAmount, 'secured'),
      barCell(count(row.pledgeCount), approx(row.pledgeCount), maxCount, 'pledges'),
      element('td', count(row.enterpriseCount), 'number enterprises'),
      element('td', utilisation(row), 'number utilisation'),
      ...riskCells(row, REGION_RISK_COLUMNS),
    );
    body.append(tr);
  }
}

function renderPledgees(answer) {
  const body = $('pledgees').querySelector('tbody');
  body.replaceChildren();
  const rows = (answer.rows || [])
    .slice()
    .sort((a, b) => approx(b.securedAmount) - approx(a.securedAmount))
    .slice(0, TOP_PLEDGEES_MAX);
  const maxAmount = Math.max(0, ...rows.map((r) => approx(r.securedAmount)));
  for (const row of rows) {
    const tr = element('tr');
    tr.dataset.key = row.key;
    tr.append(
      element('td', row.name || row.key, 'name'),
      barCell(yuan(row.securedAmount), approx(row.securedAmount), maxAmount, 'secured'),
      element('td', count(row.pledgeCount), 'number pledges'),
      element('td', `${yuan(row.creditDrawn)} / ${yuan(row.creditLimit)}`, 'number credit'),
      element('td', utilisation(row), 'number utilisation'),
      ...riskCells(row, RISK_COLUMNS),
    );
    body.append(tr);
  }
}

function renderTrend(points) {
  const body = $('trend').querySelector('tbody');
  body.replaceChildren();
  const maxAmount = Math.max(0, ...points.map(([, t]) => approx(t.securedAmount)));
  for (const [date, total] of points) {
    const tr = element('tr');
    tr.dataset.asOf = date;
    tr.append(
      element('td', date, 'date'),
      barCell(yuan(total.securedAmount), approx(total.securedAmount), maxAmount, 'secured'),
      element('td', count(total.pledgeCount), 'number pledges'),
    );
    body.append(tr);
  }
}

/// The year-ends of the last years, then today (the browser's date).
function trendDates() {
  const today = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  const dates = [];
  for (let y = today.getFullYear() - TREND_YEARS; y < today.getFullYear(); y += 1) dates.push(`${y}-12-31`);
  dates.push(`${today.getFullYear()}-${pad(today.getMonth() + 1)}-${pad(today.getDate())}`);
  return dates;
}

async function show() {
  const path = currentPath();
  const region = path.length ? path[path.length - 1] : '';
  const mine = ++navigation;
  document.body.dataset.state = 'loading';
  $('loading').hidden = false;
  $('error').hidden = true;
  try {
    const dates = trendDates();
    const [root, byRegion, byPledgee, ...trend] = await Promise.all([
      exposure(''),
      exposure(region, 'CHILD_REGION'),
      exposure(region, 'PLEDGEE'),
      ...dates.map((d) => exposure(region, undefined, d)),
    ]);
    // A deep link names ancestors this page has not seen yet.
    for (const code of path.slice(0, -1)) {
      if (!regionNames.has(code)) regionNames.set(code, (await exposure(code)).regionName);
    }
    if (mine !== navigation) return;
    regionNames.set(byRegion.regionCode, byRegion.regionName);
    $('who').textContent = `Scope: ${root.regionName}`;
    renderCrumbs(root.regionName, path);
    renderTotals(byRegion.total || {});
    renderRegions(byRegion, path);
    renderPledgees(byPledgee);
    renderTrend(dates.map((d, i) => [d, trend[i].total || {}]));
    $('main').hidden = false;
    document.body.dataset.region = byRegion.regionCode || '';
    document.body.dataset.state = 'ready';
  } catch (error) {
    if (mine !== navigation) return;
    if (error.code === 'unauthenticated') signOut();
    showError(error);
  } finally {
    if (mine === navigation) $('loading').hidden = true;
  }
}

function signedIn(yes) {
  $('signin').hidden = yes;
  $('session').hidden = !yes;
  if (!yes) $('main').hidden = true;
}

function signOut() {
  navigation += 1; // answers still on their way were asked with the old token
  sessionStorage.removeItem(TOKEN_KEY);
  signedIn(false);
}

$('signin').addEventListener('submit', (event) => {
  event.preventDefault();
  // Kept for this tab only; never in the URL, where it would reach history and logs.
  sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  $('token').value = '';
  signedIn(true);
  show();
});
$('signout').addEventListener('click', () => {
  signOut();
  $('error').hidden = true;
  document.body.dataset.state = 'signed-out';
});
window.addEventListener('hashchange', () => {
  if (sessionStorage.getItem(TOKEN_KEY)) show();
});

buildRiskParts();
if (sessionStorage.getItem(TOKEN_KEY)) {
  signedIn(true);
  show();
} else {
  signedIn(false);
  document.body.dataset.state = 'signed-out';
}
