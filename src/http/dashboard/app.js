// The IP-office dashboard. It calls the server's JSON API (`POST /api/<service>/<method>`, the
// gRPC methods in proto3 JSON) with the viewer's own token, so it shows exactly what that token
// may see: a bank its own book, an office its region. No framework and no third-party code but
// the vendored QR code generator (qrcode.js): the page must load from the binary alone, behind an
// office's firewall.
//
// Three tabs share the page: the exposure overview (`#/330000/330100`, a drill-down), the
// regulator's report (`#/report/330000?from=…&to=…&kind=…&threshold=…`, registrations of a period
// per child region, as the provinces publish them) and the pledges (`#/pledges?q=…`, a lookup, then
// `#/pledge/<id>` and its printable certificate, in pledges.js). Words come from i18n.js (Chinese or English,
// remembered); amounts arrive as exact decimal strings and are converted to 元, 万元 or 亿元 with
// BigInt arithmetic, so no float ever decides a digit.
'use strict';

const TOKEN_KEY = 'ipledger.token';
const LANG_KEY = 'ipledger.lang';
const UNIT_KEY = 'ipledger.unit';
/// Pledgees listed at most; the rest are in the region's total (and in the CSV export).
const TOP_PLEDGEES_MAX = 10;
/// Year-ends shown in the trend, before today.
const TREND_YEARS = 9;
/// The inclusive-finance threshold of the report unless the viewer changes it (GetStatistics' own
/// default; 20,000,000.00 in 2024 releases).
const INCLUSIVE_THRESHOLD_DEFAULT = '10000000.00';

/// Amount units: yuan shown exactly (2 decimals, as the API gives them); 万元 and 亿元 rounded half
/// away from zero to `decimals` (the footer says so; the exact yuan figure is in the title).
const UNITS = {
  yuan: { exponent: 0, decimals: 2, label: 'unitYuan' },
  wan: { exponent: 4, decimals: 2, label: 'unitWan' },
  yi: { exponent: 8, decimals: 2, label: 'unitYi' },
};

/// The report's right-kind choices and what each asks GetStatistics for.
const KINDS = {
  all: { label: 'kindAll', rightKinds: [] },
  patents: { label: 'kindPatents', rightKinds: ['INVENTION_PATENT', 'UTILITY_MODEL', 'DESIGN_PATENT'] },
  trademarks: { label: 'kindTrademarks', rightKinds: ['TRADEMARK'] },
  copyrights: { label: 'kindCopyrights', rightKinds: ['COPYRIGHT'] },
};

const $ = (id) => document.getElementById(id);
/// Region code -> name, from every answer seen (the breadcrumb needs the names of ancestors).
const regionNames = new Map();
/// Answers to an older navigation are dropped: only the latest one renders.
let navigation = 0;
/// The last answers of each view, so a change of language or unit redraws without asking again.
const shown = { overview: undefined, report: undefined, pledges: undefined, pledge: undefined, certificate: undefined };
/// The token's scope root and its children (the report's region choices), asked once per sign-in.
let scopeRegions;
/// The name of the token's scope root, shown beside the sign-out button in either view.
let scopeName;

// --- Settings: language and unit, remembered in localStorage -------------------------------------

/// The saved choice, else Chinese when the browser's first preferred language is Chinese.
function initialLang() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && I18N[saved]) return saved;
  const first = (navigator.languages && navigator.languages[0]) || navigator.language || '';
  return first.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

function initialUnit() {
  const saved = localStorage.getItem(UNIT_KEY);
  return UNITS[saved] ? saved : 'yuan';
}

const settings = { lang: initialLang(), unit: initialUnit() };

/// The text of `key` in the chosen language, with `{name}` replaced from `vars`.
function t(key, vars = {}) {
  const text = I18N[settings.lang][key] ?? I18N.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? vars[name] : `{${name}}`));
}
const unitName = () => t(UNITS[settings.unit].label);
/// A label with the chosen unit filled in (labels without `{unit}` are unchanged).
const label = (key) => t(key, { unit: unitName() });
/// A CSV header: amounts there are always exact yuan, percentages plain numbers.
const csvLabel = (key) => t(key, { unit: t('unitYuan') });
const csvPercentLabel = (key) => t('percentColumn', { label: t(key) });

// --- Exact numbers -------------------------------------------------------------------------------

/// An exact decimal string as a scaled integer: "1234.5" -> { units: 12345n, scale: 1 }.
function parseDecimal(text) {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text).trim());
  if (!m) return { units: 0n, scale: 0 };
  const fraction = m[3] || '';
  const units = BigInt(m[2] + fraction);
  return { units: m[1] ? -units : units, scale: fraction.length };
}

/// n / d for d > 0, rounded half away from zero.
function divideRounded(n, d) {
  const quotient = n / d;
  const remainder = n % d;
  const twice = 2n * (remainder < 0n ? -remainder : remainder);
  if (twice < d) return quotient;
  return n < 0n ? quotient - 1n : quotient + 1n;
}

/// `text` yuan in units of 10^exponent yuan, as an integer of 10^-decimals of that unit.
function scaled(text, exponent, decimals) {
  const { units, scale } = parseDecimal(text);
  const shift = decimals - scale - exponent;
  return shift >= 0 ? units * 10n ** BigInt(shift) : divideRounded(units, 10n ** BigInt(-shift));
}

/// The locale's grouping of a BigInt is exact (Intl formats BigInt without a float).
const integerFormat = () => new Intl.NumberFormat(settings.lang);
const decimalSign = () => integerFormat().formatToParts(1.5).find((p) => p.type === 'decimal').value;

/// A scaled integer with `decimals` decimals, grouped and signed as the locale writes numbers.
function formatScaled(value, decimals) {
  const negative = value < 0n;
  const magnitude = negative ? -value : value;
  const base = 10n ** BigInt(decimals);
  const whole = integerFormat().format(magnitude / base);
  const fraction = decimals > 0 ? decimalSign() + String(magnitude % base).padStart(decimals, '0') : '';
  return (negative ? '-' : '') + whole + fraction;
}

/// A decimal string with its own digits (a percentage from the API), in the locale's format.
function formatDecimal(text) {
  const { units, scale } = parseDecimal(text);
  return formatScaled(units, scale);
}

/// An amount in yuan, exactly, for titles: "1,234,567.80 元".
const exactYuan = (amount) => t('exact', { amount: formatScaled(scaled(amount || '0', 0, 2), 2) });

/// An amount as shown: in the chosen unit, with the exact yuan figure as its title.
function money(amount) {
  const unit = UNITS[settings.unit];
  const text = formatScaled(scaled(amount || '0', unit.exponent, unit.decimals), unit.decimals);
  return { text, title: exactYuan(amount) };
}

// uint64 fields are strings in proto3 JSON and are omitted when zero.
const count = (n) => integerFormat().format(BigInt(n || '0'));
/// Exact ordering of amounts (descending), for sorting rows.
const byAmountDesc = (field) => (a, b) => {
  const [x, y] = [scaled(a[field] || '0', 0, 2), scaled(b[field] || '0', 0, 2)];
  return x < y ? 1 : x > y ? -1 : 0;
};
// Bars only need to be approximately right; the figures beside them are exact.
const approx = (value) => Number(value || 0);

// Risk figures are empty where they do not apply (no appraisal, no secured amount, a bank's
// programme budget): shown as a dash, never as a zero that would claim something.
const optionalMoney = (amount) => (amount ? money(amount) : '–');
const percent = (value) => (value ? formatDecimal(value) + t('percentSuffix') : '–');
function pair(a, b) {
  if (!a && !b) return '–';
  const [x, y] = [optionalMoney(a), optionalMoney(b)];
  const part = (v, key) => (typeof v === 'string' ? v : v[key]);
  return { text: `${part(x, 'text')} / ${part(y, 'text')}`, title: `${part(x, 'title')} / ${part(y, 'title')}` };
}
const nonZero = (amount) => approx(amount) !== 0;

function utilisation(row) {
  const limit = approx(row.creditLimit);
  if (!row.creditLimit || limit === 0) return '–';
  return percent(((100 * approx(row.creditDrawn)) / limit).toFixed(1));
}

/// A calendar date of the API ("2021-12-31") in the chosen language.
function formatDate(iso) {
  const format = new Intl.DateTimeFormat(settings.lang, { dateStyle: 'medium', timeZone: 'UTC' });
  return format.format(new Date(`${iso}T00:00:00Z`));
}

/// The browser's date today, as the API writes dates.
function today() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// --- The API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(json, status) {
    super(json.message || `HTTP ${status}`);
    this.code = json.code || String(status);
    const info = (json.details || []).find((d) => d.type === 'google.rpc.ErrorInfo');
    this.reason = info && info.debug ? info.debug.reason : undefined;
  }
}

/// The answer to `method` as JSON and as the text the server sent.
async function callText(method, body) {
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
  return { json, text };
}

const call = async (method, body) => (await callText(method, body)).json;

const exposure = (regionCode, groupBy, asOf) =>
  call('ipledger.v1.ExposureService/GetExposure', { regionCode, groupBy, asOf });

const statistics = (query) =>
  call('ipledger.v1.ExposureService/GetStatistics', {
    regionCode: query.region,
    from: query.from,
    to: query.to,
    groupBy: 'CHILD_REGION',
    inclusiveThreshold: query.threshold,
    rightKinds: KINDS[query.kind].rightKinds,
  });

// --- Elements ------------------------------------------------------------------------------------

function element(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) fill(e, text);
  if (className) e.className = className;
  return e;
}

/// Sets a figure: a plain text, or { text, title } for an amount whose exact yuan is its title.
function fill(e, value) {
  if (value !== null && typeof value === 'object') {
    e.textContent = value.text;
    e.title = value.title;
  } else {
    e.textContent = value;
    e.removeAttribute('title');
  }
}

/// A cell with the figure and a bar of `value / max`.
function barCell(figure, value, max, className) {
  const cell = element('td', undefined, `bar-cell ${className}`);
  const line = element('div', undefined, 'bar-line');
  const bar = element('div', undefined, 'bar');
  const span = element('span');
  // element.style from script is allowed by the CSP (style-src 'self' forbids style attributes).
  span.style.width = `${max > 0 ? Math.max(0, Math.min(100, (100 * value) / max)) : 0}%`;
  bar.append(span);
  line.append(element('span', figure, 'figure'), bar);
  cell.append(line);
  return cell;
}

/// Replaces a table's header row with `columns`' labels in the chosen language and unit.
function tableHeaders(table, columns) {
  const tr = $(table).querySelector('thead tr');
  tr.replaceChildren(...columns.map((c) => element('th', label(c.label), c.headerClass || c.className)));
}

// --- Columns: one list per table, for its header, its cells and its CSV --------------------------

// CSV fields: [header, value of a row]. Amounts are the API's exact yuan; absent optional
// figures stay empty, absent counts (proto3 JSON omits zeros) are 0.
const csvAmount = (key, field, optional) => [() => csvLabel(key), (r) => r[field] || (optional ? '' : '0.00')];
const csvCount = (key, field) => [() => csvLabel(key), (r) => r[field] || '0'];
const csvPercent = (key, field) => [() => csvPercentLabel(key), (r) => r[field] || ''];

/// The risk columns of both tables, in order; `warn` marks a cell that needs attention.
const RISK_COLUMNS = [
  {
    label: 'atRisk',
    className: 'number risk at-risk',
    cell: (r) => optionalMoney(r.atRiskAmount),
    warn: (r) => nonZero(r.atRiskAmount),
  },
  {
    label: 'defaulted',
    className: 'number risk defaulted',
    cell: (r) => optionalMoney(r.defaultedAmount),
    warn: (r) => nonZero(r.defaultedAmount),
  },
  { label: 'nonPerforming', className: 'number risk npl', cell: (r) => percent(r.nonPerformingPercent) },
  { label: 'loanToValue', className: 'number risk ltv', cell: (r) => percent(r.loanToValuePercent) },
  {
    label: 'compensation',
    className: 'number risk compensation',
    cell: (r) => pair(r.compensationClaimed, r.compensationPaid),
  },
];
/// Programmes belong to regions: the region table only.
const REGION_RISK_COLUMNS = [
  ...RISK_COLUMNS,
  {
    label: 'budgetLeft',
    className: 'number risk budget-left',
    cell: (r) => optionalMoney(r.programmeBudgetLeft),
  },
];

/// Every figure of an exposure row, for the CSV exports of the region and pledgee tables.
const EXPOSURE_CSV = [
  csvAmount('securedAmount', 'securedAmount'),
  csvCount('pledges', 'pledgeCount'),
  csvCount('enterprises', 'enterpriseCount'),
  csvCount('pledgedRights', 'rightCount'),
  csvAmount('creditDrawn', 'creditDrawn'),
  csvAmount('creditLimit', 'creditLimit'),
  csvAmount('atRisk', 'atRiskAmount', true),
  csvCount('atRiskCount', 'atRiskCount'),
  csvAmount('defaulted', 'defaultedAmount', true),
  csvPercent('nonPerforming', 'nonPerformingPercent'),
  csvAmount('appraised', 'appraisedValue', true),
  csvPercent('loanToValue', 'loanToValuePercent'),
  csvAmount('compensationClaimed', 'compensationClaimed', true),
  csvAmount('compensationPaid', 'compensationPaid', true),
];

/// The risk cards of the totals; a card whose figure is `undefined` does not apply and is hidden.
const RISK_CARDS = [
  { id: 'total-at-risk', label: 'atRisk', value: (t) => optionalMoney(t.atRiskAmount) },
  { id: 'total-at-risk-count', label: 'atRiskCount', value: (t) => count(t.atRiskCount) },
  { id: 'total-defaulted', label: 'defaulted', value: (t) => optionalMoney(t.defaultedAmount) },
  { id: 'total-npl', label: 'nonPerforming', value: (t) => percent(t.nonPerformingPercent) },
  { id: 'total-appraised', label: 'appraised', value: (t) => optionalMoney(t.appraisedValue) },
  { id: 'total-ltv', label: 'loanToValue', value: (t) => percent(t.loanToValuePercent) },
  {
    id: 'total-compensation',
    label: 'compensation',
    value: (t) => pair(t.compensationClaimed, t.compensationPaid),
  },
  // Offices and admins only: a bank's answer has no budget.
  {
    id: 'total-budget',
    label: 'budget',
    value: (t) => (t.programmeBudget ? pair(t.programmeBudgetLeft, t.programmeBudget) : undefined),
  },
];

/// The risk cells of a row, one per column.
const riskCells = (row, columns) =>
  columns.map((c) => {
    const warn = c.warn && c.warn(row) ? ' warn' : '';
    return element('td', c.cell(row), `${c.className}${warn}`);
  });

/// The risk cards, built once; their headings are set with the other texts.
function buildRiskCards() {
  $('risk-cards').replaceChildren(
    ...RISK_CARDS.map((c) => {
      const card = element('div', undefined, 'card');
      card.id = `${c.id}-card`;
      const heading = element('h3');
      heading.dataset.card = c.label;
      const figure = element('p');
      figure.id = c.id;
      card.append(heading, figure);
      return card;
    }),
  );
}

/// Every static text in the chosen language and unit.
function applyTexts() {
  document.documentElement.lang = settings.lang;
  document.title = t('documentTitle');
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = label(e.dataset.i18n);
  for (const e of document.querySelectorAll('[data-card]')) e.textContent = label(e.dataset.card);
  for (const e of document.querySelectorAll('button.export')) e.title = t('exportTitle');
  $('views').setAttribute('aria-label', t('viewsLabel'));
  $('crumbs').setAttribute('aria-label', t('regionNav'));
  $('summary').setAttribute('aria-label', t('totals'));
  $('lang').value = settings.lang;
  $('unit').value = settings.unit;
}

// --- Routing -------------------------------------------------------------------------------------

const isCounty = (code) => /^\d{4}(?!00)\d{2}$/.test(code);

/// The view from the URL: `#/330000/330100` (the overview's drill-down below the token's scope
/// root) or `#/report/330000?from=…` (the report of a region, its parameters in the query).
function currentRoute() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  const params = new URLSearchParams(query || '');
  if (parts[0] === 'pledges') return { view: 'pledges', path: [], params };
  if (parts[0] === 'pledge') {
    const view = parts[2] === 'certificate' ? 'certificate' : 'pledge';
    return { view, path: [], id: decodeURIComponent(parts[1] || ''), params };
  }
  const report = parts[0] === 'report';
  const codes = (report ? parts.slice(1) : parts).filter((c) => /^\d{6}$/.test(c));
  return { view: report ? 'report' : 'overview', path: codes, params };
}
const pathHash = (path) => `#/${path.join('/')}`;

/// The report's parameters: the URL's, else this calendar year, all rights, the default threshold.
function reportQuery(route) {
  const year = today().slice(0, 4);
  const p = route.params;
  const kind = KINDS[p.get('kind')] ? p.get('kind') : 'all';
  return {
    region: route.path.length ? route.path[route.path.length - 1] : '',
    from: p.get('from') || `${year}-01-01`,
    to: p.get('to') || `${year}-12-31`,
    kind,
    threshold: p.get('threshold') || INCLUSIVE_THRESHOLD_DEFAULT,
  };
}

function reportHash(query) {
  const params = new URLSearchParams({ from: query.from, to: query.to, kind: query.kind, threshold: query.threshold });
  return `#/report${query.region ? `/${query.region}` : ''}?${params}`;
}

/// The tab of each view: a pledge and its certificate belong to the pledges' tab.
const TAB_OF = {
  overview: 'overview',
  report: 'report',
  pledges: 'pledges',
  pledge: 'pledges',
  certificate: 'pledges',
};

/// The tabs return to where each was last (the pledges' tab to its last lookup); a first visit to
/// the report shows the report of the region in view.
const lastHash = { overview: '#/', report: undefined, pledges: undefined };
function renderTabs(route) {
  const tab = TAB_OF[route.view];
  if (route.view === tab) lastHash[tab] = location.hash || '#/';
  const firstReport = reportHash(reportQuery({ path: route.path.slice(-1), params: new URLSearchParams() }));
  $('tab-overview').href = lastHash.overview;
  $('tab-report').href = lastHash.report || firstReport;
  $('tab-pledges').href = lastHash.pledges || '#/pledges';
  for (const name of ['overview', 'report', 'pledges']) $(`tab-${name}`).toggleAttribute('aria-current', tab === name);
  for (const view of Object.keys(TAB_OF)) $(view).hidden = route.view !== view;
}

function showError(error) {
  const box = $('error');
  const prefix = error.reason || error.code || t('errorPrefix');
  box.textContent = `${prefix}: ${error.message}`;
  box.hidden = false;
  document.body.dataset.state = 'error';
}

/// The name of the token's scope root, asked once per sign-in by the views that do not read it.
async function ensureScopeName() {
  if (scopeName === undefined) scopeName = (await exposure('')).regionName;
}

// --- The overview --------------------------------------------------------------------------------

function renderTotals(total) {
  fill($('total-secured'), money(total.securedAmount));
  $('total-pledges').textContent = count(total.pledgeCount);
  $('total-enterprises').textContent = count(total.enterpriseCount);
  $('total-rights').textContent = count(total.rightCount);
  fill($('total-credit'), pair(total.creditDrawn || '0', total.creditLimit || '0'));
  fill($('total-utilisation'), utilisation(total));
  for (const c of RISK_CARDS) {
    const value = c.value(total);
    $(`${c.id}-card`).hidden = value === undefined;
    fill($(c.id), value === undefined ? '' : value);
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
    const hash = pathHash(path.slice(0, i + 1));
    nav.append(element('span', '›', 'sep'), link(regionNames.get(code) || code, hash, i === path.length - 1));
  });
}

/// A region's name as a link one level down, or as text for a county (counties are leaves).
function regionNameCell(row, hash) {
  const cell = element('td', undefined, 'name');
  if (isCounty(row.key)) {
    cell.textContent = row.name;
  } else {
    const a = element('a', row.name);
    a.href = hash;
    a.dataset.key = row.key;
    cell.append(a);
  }
  return cell;
}

const REGION_COLUMNS = [
  { label: 'region', className: 'name' },
  // Bar columns keep their headers at the left, above the figure and its bar.
  { label: 'securedAmount', className: 'secured' },
  { label: 'pledges', className: 'pledges' },
  { label: 'enterprises', className: 'number enterprises' },
  { label: 'creditUtilisation', className: 'number utilisation' },
  ...REGION_RISK_COLUMNS,
];

function renderRegions(answer, path) {
  tableHeaders('regions', REGION_COLUMNS);
  const body = $('regions').querySelector('tbody');
  body.replaceChildren();
  const rows = (answer.rows || []).slice().sort(byAmountDesc('securedAmount'));
  $('by-region').hidden = rows.length === 0;
  const maxAmount = Math.max(0, ...rows.map((r) => approx(r.securedAmount)));
  const maxCount = Math.max(0, ...rows.map((r) => approx(r.pledgeCount)));
  for (const row of rows) {
    regionNames.set(row.key, row.name);
    const tr = element('tr');
    tr.dataset.key = row.key;
    tr.append(
      regionNameCell(row, pathHash([...path, row.key])),
      barCell(money(row.securedAmount), approx(row.securedAmount), maxAmount, 'secured'),
      barCell(count(row.pledgeCount), approx(row.pledgeCount), maxCount, 'pledges'),
      element('td', count(row.enterpriseCount), 'number enterprises'),
      element('td', utilisation(row), 'number utilisation'),
      ...riskCells(row, REGION_RISK_COLUMNS),
    );
    body.append(tr);
  }
}

const PLEDGEE_COLUMNS = [
  { label: 'pledgee', className: 'name' },
  { label: 'securedAmount', className: 'secured' },
  { label: 'pledges', className: 'number pledges' },
  { label: 'creditDrawnLimit', className: 'number credit' },
  { label: 'creditUtilisation', className: 'number utilisation' },
  ...RISK_COLUMNS,
];

function renderPledgees(answer) {
  tableHeaders('pledgees', PLEDGEE_COLUMNS);
  const body = $('pledgees').querySelector('tbody');
  body.replaceChildren();
  const rows = (answer.rows || []).slice().sort(byAmountDesc('securedAmount')).slice(0, TOP_PLEDGEES_MAX);
  const maxAmount = Math.max(0, ...rows.map((r) => approx(r.securedAmount)));
  for (const row of rows) {
    const tr = element('tr');
    tr.dataset.key = row.key;
    tr.append(
      element('td', row.name || row.key, 'name'),
      barCell(money(row.securedAmount), approx(row.securedAmount), maxAmount, 'secured'),
      element('td', count(row.pledgeCount), 'number pledges'),
      element('td', pair(row.creditDrawn || '0', row.creditLimit || '0'), 'number credit'),
      element('td', utilisation(row), 'number utilisation'),
      ...riskCells(row, RISK_COLUMNS),
    );
    body.append(tr);
  }
}

// --- Alerts: today's alerts of the region in view (RiskService/ListAlerts) -----------------------

/// Alerts asked for at most (their pledges: a pledge's alerts come together); more are in the API.
const ALERT_PLEDGES_MAX = 100;

const ALERT_COLUMNS = [
  { label: 'alertKind', className: 'kind', cell: (a) => t(`alert_${a.kind}`) },
  { label: 'alertPledge', className: 'pledge' },
  { label: 'regionCode', className: 'county', cell: (a) => a.countyCode },
  { label: 'alertArose', className: 'date', cell: (a) => formatDate(a.aroseOn) },
  { label: 'securedAmount', className: 'number secured', cell: (a) => optionalMoney(a.securedAmount) },
  { label: 'alertDetail', className: 'detail', cell: (a) => alertDetail(a) },
];

/// What the alert's figures say, in a sentence of the chosen language.
function alertDetail(a) {
  const days = count(String(a.ageDays || 0));
  switch (a.kind) {
    case 'RIGHT_EXPIRES_NEAR_TERM':
      return t('alertExpiry', { right: a.rightNumber, ends: formatDate(a.expiresOn), term: formatDate(a.debtTermEnd) });
    case 'LOAN_TO_VALUE_ABOVE_POLICY': {
      const value = optionalMoney(a.appraisedValue);
      return {
        text: t('alertLtv', {
          ltv: percent(a.loanToValuePercent),
          threshold: percent(a.thresholdPercent),
          value: value.text,
          unit: unitName(),
        }),
        title: value.title,
      };
    }
    case 'NEWLY_AT_RISK':
      // Flags are named generically: one this page has no words for shows its API name.
      return t('alertAtRisk', { right: a.rightNumber, reason: I18N.en[`flag_${a.reason}`] ? t(`flag_${a.reason}`) : a.reason });
    case 'DEFAULT_UNRESOLVED':
      return t('alertDefault', { date: formatDate(a.defaultedOn), days });
    case 'CLAIM_UNDECIDED':
      return t('alertClaim', { date: formatDate(a.filedOn), days });
    default:
      return a.kind;
  }
}

function renderAlerts(answer) {
  tableHeaders('alerts', ALERT_COLUMNS);
  const body = $('alerts').querySelector('tbody');
  const alerts = answer.alerts || [];
  body.replaceChildren(
    ...alerts.map((a) => {
      const tr = element('tr');
      tr.dataset.key = `${a.pledgeId} ${a.kind}`;
      const cells = ALERT_COLUMNS.map((c) => {
        if (c.label !== 'alertPledge') return element('td', c.cell(a), c.className);
        const cell = element('td', undefined, c.className);
        const link = element('a', a.pledgeId.slice(0, 8));
        link.href = pledgeHash(a.pledgeId);
        link.title = a.pledgeId;
        cell.append(link);
        return cell;
      });
      tr.append(...cells);
      return tr;
    }),
  );
  $('alerts-none').hidden = alerts.length > 0;
  $('alerts-more').hidden = !answer.nextPageToken;
}

const TREND_COLUMNS = [
  { label: 'asOf', className: 'date' },
  { label: 'securedAmount', className: 'secured' },
  { label: 'pledges', className: 'number pledges' },
];

function renderTrend(points) {
  tableHeaders('trend', TREND_COLUMNS);
  const body = $('trend').querySelector('tbody');
  body.replaceChildren();
  const maxAmount = Math.max(0, ...points.map(([, t]) => approx(t.securedAmount)));
  for (const [date, total] of points) {
    const tr = element('tr');
    tr.dataset.asOf = date;
    tr.append(
      element('td', formatDate(date), 'date'),
      barCell(money(total.securedAmount), approx(total.securedAmount), maxAmount, 'secured'),
      element('td', count(total.pledgeCount), 'number pledges'),
    );
    body.append(tr);
  }
}

/// The year-ends of the last years, then today (the browser's date).
function trendDates() {
  const now = today();
  const year = Number(now.slice(0, 4));
  const dates = [];
  for (let y = year - TREND_YEARS; y < year; y += 1) dates.push(`${y}-12-31`);
  dates.push(now);
  return dates;
}

function renderOverview(data) {
  scopeName = data.root.regionName;
  renderCrumbs(data.root.regionName, data.path);
  renderTotals(data.byRegion.total || {});
  renderRegions(data.byRegion, data.path);
  renderPledgees(data.byPledgee);
  renderTrend(data.trend);
  renderAlerts(data.alerts);
}

async function loadOverview(route) {
  const path = route.path;
  const region = path.length ? path[path.length - 1] : '';
  const dates = trendDates();
  const [root, byRegion, byPledgee, alerts, ...trend] = await Promise.all([
    exposure(''),
    exposure(region, 'CHILD_REGION'),
    exposure(region, 'PLEDGEE'),
    call('ipledger.v1.RiskService/ListAlerts', { regionCode: region, pageSize: ALERT_PLEDGES_MAX }),
    ...dates.map((d) => exposure(region, undefined, d)),
  ]);
  // A deep link names ancestors this page has not seen yet.
  for (const code of path.slice(0, -1)) {
    if (!regionNames.has(code)) regionNames.set(code, (await exposure(code)).regionName);
  }
  regionNames.set(byRegion.regionCode, byRegion.regionName);
  return { path, root, byRegion, byPledgee, alerts, trend: dates.map((d, i) => [d, trend[i].total || {}]) };
}

// --- The regulator's report ----------------------------------------------------------------------

/// The report table: a region's registrations of the period, as the published tables give them.
const REPORT_COLUMNS = [
  { label: 'region', className: 'name', cell: (r) => r.name },
  { label: 'registeredAmount', className: 'number amount', cell: (r) => money(r.registeredAmount) },
  { label: 'registrations', className: 'number registrations', cell: (r) => count(r.registrations) },
  { label: 'reportEnterprises', className: 'number enterprises', cell: (r) => count(r.enterprises) },
  { label: 'patents', className: 'number patents', cell: (r) => count(r.patents) },
  { label: 'trademarks', className: 'number trademarks', cell: (r) => count(r.trademarks) },
  { label: 'copyrights', className: 'number copyrights', cell: (r) => count(r.copyrights) },
  { label: 'previousAmount', className: 'number previous', cell: (r) => money(r.previousRegisteredAmount) },
  { label: 'growth', className: 'number growth', cell: (r) => percent(r.amountGrowthPercent) },
  { label: 'inclusiveShare', className: 'number inclusive', cell: (r) => percent(r.inclusiveSharePercent) },
  // The risk side's flows of the period, by their own business dates and whenever the pledge was
  // registered (the note under the table says so). Zeros are real here: nothing happened.
  { label: 'defaults', className: 'number flow defaults', cell: (r) => count(r.defaults) },
  { label: 'defaulted', className: 'number flow defaulted', cell: (r) => money(r.defaultedAmount) },
  { label: 'compensationClaimed', className: 'number flow claimed', cell: (r) => money(r.compensationClaimed) },
  { label: 'compensationPaid', className: 'number flow paid', cell: (r) => money(r.compensationPaid) },
];

const REPORT_CSV = [
  csvAmount('registeredAmount', 'registeredAmount'),
  csvCount('registrations', 'registrations'),
  csvCount('reportEnterprises', 'enterprises'),
  csvCount('patents', 'patents'),
  csvCount('trademarks', 'trademarks'),
  csvCount('copyrights', 'copyrights'),
  csvCount('inclusiveRegistrations', 'inclusiveRegistrations'),
  [(a) => t('inclusiveShareCsv', { threshold: a.inclusiveThreshold }), (r) => r.inclusiveSharePercent || ''],
  csvAmount('previousAmount', 'previousRegisteredAmount'),
  csvCount('previousRegistrations', 'previousRegistrations'),
  csvPercent('growth', 'amountGrowthPercent'),
  csvCount('defaults', 'defaults'),
  csvAmount('defaulted', 'defaultedAmount'),
  csvAmount('compensationClaimed', 'compensationClaimed'),
  csvAmount('compensationPaid', 'compensationPaid'),
];

/// Child regions in the order of their codes, as the published tables list them.
const reportRows = (answer) => (answer.rows || []).slice().sort((a, b) => a.key.localeCompare(b.key));

/// The region choices: the scope root, its children, and the report's region when it is deeper.
function renderRegionChoices(answer, query) {
  const select = $('report-region');
  const option = (value, text) => {
    const o = element('option', text);
    o.value = value;
    return o;
  };
  const options = [option('', scopeRegions.name), ...scopeRegions.children.map((c) => option(c.key, c.name))];
  // The scope root by its code is the first choice; a deeper region is added as a last one.
  const region = query.region === scopeRegions.code ? '' : query.region;
  if (region && !scopeRegions.children.some((c) => c.key === region)) {
    options.push(option(region, answer.regionName));
  }
  // A redraw (language, unit) keeps what the viewer chose and has not submitted yet; a new
  // report starts from an emptied list, so from its own region.
  const chosen = select.options.length ? select.value : region;
  select.replaceChildren(...options);
  select.value = chosen;
}

function renderReportForm(query) {
  $('report-from').value = query.from;
  $('report-to').value = query.to;
  $('report-kind').value = query.kind;
  $('report-threshold').value = query.threshold;
}

function renderReportTable(answer, query) {
  // The threshold is set in yuan: its header says it in yuan, whatever the unit of the figures.
  const threshold = exactYuan(answer.inclusiveThreshold);
  const columns = REPORT_COLUMNS.map((c) =>
    c.label === 'inclusiveShare' ? { ...c, label: undefined, text: t('inclusiveShare', { threshold }) } : c,
  );
  $('report-table')
    .querySelector('thead tr')
    .replaceChildren(...columns.map((c) => element('th', c.text || label(c.label), c.className)));
  const body = $('report-table').querySelector('tbody');
  body.replaceChildren();
  const rows = reportRows(answer);
  for (const row of rows) {
    regionNames.set(row.key, row.name);
    const tr = element('tr');
    tr.dataset.key = row.key;
    tr.append(
      regionNameCell(row, reportHash({ ...query, region: row.key })),
      ...columns.slice(1).map((c) => element('td', c.cell(row), c.className)),
    );
    body.append(tr);
  }
  const total = { ...(answer.total || {}), name: t('total') };
  const tr = element('tr', undefined, 'total');
  tr.dataset.key = 'total';
  tr.append(...columns.map((c) => element('td', c.cell(total), c.className)));
  body.append(tr);
  $('report-no-rows').hidden = rows.length > 0;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attributes, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) e.setAttribute(name, value);
  if (text !== undefined) e.textContent = text;
  return e;
}

/// A horizontal bar chart of the registered amount per child region, in the chosen unit, with the
/// year-on-year growth beside each bar: the figure of the provinces' published reports.
function renderReportChart(answer) {
  const rows = reportRows(answer);
  const figure = $('report-chart');
  figure.replaceChildren();
  if (rows.length === 0) return;
  const [width, nameWidth, valueWidth, rowHeight, top] = [760, 120, 210, 22, 34];
  const barMax = width - nameWidth - valueWidth;
  const height = top + rows.length * rowHeight + 8;
  const chart = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width: '100%',
    role: 'img',
    'aria-label': t('chartLabel'),
    class: 'chart',
  });
  const total = answer.total || {};
  const heading = `${t('chartTitle', { unit: unitName() })} · ${t('total')} ${money(total.registeredAmount).text}`;
  chart.append(svg('text', { x: 0, y: 18, class: 'chart-title' }, heading));
  const max = Math.max(0, ...rows.map((r) => approx(r.registeredAmount)));
  rows.forEach((row, i) => {
    const y = top + i * rowHeight;
    const length = max > 0 ? (barMax * approx(row.registeredAmount)) / max : 0;
    const bar = svg('rect', { x: nameWidth, y: y + 3, width: length.toFixed(1), height: rowHeight - 8, class: 'chart-bar' });
    bar.append(svg('title', {}, `${row.name}: ${exactYuan(row.registeredAmount)}`));
    const growth = row.amountGrowthPercent ? `  ${t('growth')} ${percent(row.amountGrowthPercent)}` : '';
    chart.append(
      svg('text', { x: nameWidth - 6, y: y + rowHeight - 7, class: 'chart-name' }, row.name),
      bar,
      svg('text', { x: nameWidth + length + 6, y: y + rowHeight - 7, class: 'chart-value' }, money(row.registeredAmount).text + growth),
    );
  });
  figure.append(chart);
}

/// What the report shows: region, period and kind of right, in words.
function caption(answer, query) {
  return t('reportCaption', {
    region: answer.regionName,
    from: formatDate(answer.from),
    to: formatDate(answer.to),
    kind: t(KINDS[query.kind].label),
  });
}

function renderReport(data) {
  renderRegionChoices(data.answer, data.query);
  $('report-caption').textContent = caption(data.answer, data.query);
  renderReportTable(data.answer, data.query);
  renderReportChart(data.answer);
}

async function loadReport(route) {
  const query = reportQuery(route);
  if (!scopeRegions) {
    const root = await exposure('', 'CHILD_REGION');
    const children = (root.rows || []).map((r) => ({ key: r.key, name: r.name }));
    children.sort((a, b) => a.key.localeCompare(b.key));
    scopeRegions = { code: root.regionCode || '', name: root.regionName, children };
    scopeName = root.regionName;
  }
  const answer = await statistics(query);
  return { query, answer };
}

// --- CSV exports ---------------------------------------------------------------------------------

/// A figure as the API writes it (amounts, counts, percentages): a spreadsheet reads it as a number.
const CSV_NUMBER = /^-?\d+(\.\d+)?$/;
/// A text cell starting with one of these is a formula to Excel and WPS (CSV injection).
const CSV_FORMULA_START = /^[=+\-@\t\r]/;

/// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. Text that a
/// spreadsheet would run as a formula (a bank named `=HYPERLINK(…)`) gets a leading `'` and is
/// quoted, as OWASP advises; numbers, negative ones too, stay numbers.
function csvField(value) {
  let text = String(value ?? '');
  const formula = !CSV_NUMBER.test(text) && CSV_FORMULA_START.test(text);
  if (formula) text = `'${text}`;
  return formula || /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/// Downloads rows as a CSV file: UTF-8 with a byte-order mark (Excel and WPS then read Chinese
/// correctly), CRLF line ends.
function downloadCsv(filename, rows) {
  const text = rows.map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n';
  const blob = new Blob(['\uFEFF', text], { type: 'text/csv;charset=utf-8' });
  const a = element('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has started from the element; the URL is released a little later.
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

/// Rows of exposure figures: a key and name column, then every figure of the row.
function exposureCsv(keyLabel, nameLabel, rows) {
  const header = [t(keyLabel), t(nameLabel), ...EXPOSURE_CSV.map(([h]) => h())];
  return [header, ...rows.map((r) => [r.key, r.name || r.key, ...EXPOSURE_CSV.map(([, v]) => v(r))])];
}

const regionPart = (code) => code || 'all';

const EXPORTS = {
  regions: () => {
    const a = shown.overview.byRegion;
    const rows = (a.rows || []).slice().sort(byAmountDesc('securedAmount'));
    return [`exposure-regions-${regionPart(a.regionCode)}-${today()}.csv`, exposureCsv('regionCode', 'region', rows)];
  },
  pledgees: () => {
    const a = shown.overview.byPledgee;
    const rows = (a.rows || []).slice().sort(byAmountDesc('securedAmount'));
    return [`exposure-pledgees-${regionPart(a.regionCode)}-${today()}.csv`, exposureCsv('creditCode', 'pledgee', rows)];
  },
  trend: () => {
    const fields = EXPOSURE_CSV.slice(0, 3);
    const header = [t('asOf'), ...fields.map(([h]) => h())];
    const rows = shown.overview.trend.map(([date, total]) => [date, ...fields.map(([, v]) => v(total))]);
    return [`exposure-trend-${regionPart(shown.overview.byRegion.regionCode)}-${today()}.csv`, [header, ...rows]];
  },
  report: () => {
    const { answer, query } = shown.report;
    const header = [t('regionCode'), t('region'), ...REPORT_CSV.map(([h]) => h(answer))];
    const line = (r, name) => [r.key, name, ...REPORT_CSV.map(([, v]) => v(r))];
    const rows = reportRows(answer).map((r) => line(r, r.name));
    rows.push(line({ ...(answer.total || {}), key: answer.regionCode || '' }, t('total')));
    const name = `statistics-${regionPart(answer.regionCode)}-${answer.from}-${answer.to}-${query.kind}.csv`;
    return [name, [header, ...rows]];
  },
};

// --- Navigation ----------------------------------------------------------------------------------

/// Each view: how its data is read, drawn (again on a change of language or unit), which region it
/// shows, and what is set once when its data arrives (a form's values, which redraws leave alone).
const VIEWS = {
  overview: { load: loadOverview, render: renderOverview, region: (data) => data.byRegion.regionCode },
  report: {
    load: loadReport,
    render: renderReport,
    region: (data) => data.answer.regionCode,
    arrived: (data) => {
      $('report-region').replaceChildren();
      renderReportForm(data.query);
    },
  },
  pledges: {
    load: loadPledgeList,
    render: renderPledgeList,
    arrived: (data) => {
      $('pledge-query').value = data.query;
    },
  },
  pledge: { load: loadPledge, render: renderPledge },
  certificate: { load: loadCertificate, render: renderCertificate },
};

function render() {
  const route = currentRoute();
  if (shown[route.view]) VIEWS[route.view].render(shown[route.view]);
  $('who').textContent = scopeName === undefined ? '' : t('scope', { name: scopeName });
}

async function show() {
  const route = currentRoute();
  const mine = ++navigation;
  document.body.dataset.state = 'loading';
  $('loading').hidden = false;
  $('error').hidden = true;
  try {
    const view = VIEWS[route.view];
    const data = await view.load(route);
    if (mine !== navigation) return;
    shown[route.view] = data;
    renderTabs(route);
    if (view.arrived) view.arrived(data);
    render();
    $('main').hidden = false;
    document.body.dataset.view = route.view;
    document.body.dataset.region = (view.region && view.region(data)) || '';
    document.body.dataset.pledge = route.id || '';
    document.body.dataset.kind = route.view === 'report' ? data.query.kind : '';
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
  for (const view of Object.keys(shown)) shown[view] = undefined;
  scopeRegions = undefined;
  scopeName = undefined;
  lastHash.overview = '#/';
  lastHash.report = undefined;
  lastHash.pledges = undefined;
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

// A change of language or unit redraws what is shown, without asking the server again.
$('lang').addEventListener('change', () => {
  settings.lang = $('lang').value;
  localStorage.setItem(LANG_KEY, settings.lang);
  applyTexts();
  render();
});
$('unit').addEventListener('change', () => {
  settings.unit = $('unit').value;
  localStorage.setItem(UNIT_KEY, settings.unit);
  applyTexts();
  render();
});

// The report's form only changes the URL: the URL is the report (bookmarkable, printable).
$('report-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const hash = reportHash({
    region: $('report-region').value,
    from: $('report-from').value,
    to: $('report-to').value,
    kind: $('report-kind').value,
    threshold: $('report-threshold').value.replace(/[,\s]/g, ''),
  });
  // The same report again asks again: the ledger may have new registrations.
  if (hash === location.hash) show();
  else location.hash = hash;
});
$('report-print').addEventListener('click', () => window.print());
$('certificate-print').addEventListener('click', () => window.print());

// The lookup's query only changes the URL, as the report's form does; a pledge id opens the pledge.
$('pledge-search').addEventListener('submit', (event) => {
  event.preventDefault();
  const query = $('pledge-query').value.trim();
  const hash = PLEDGE_ID.test(query) ? pledgeHash(query) : `#/pledges?${new URLSearchParams({ q: query })}`;
  if (hash === location.hash) show();
  else location.hash = hash;
});
for (const button of document.querySelectorAll('button.export')) {
  button.addEventListener('click', () => {
    const [filename, rows] = EXPORTS[button.dataset.export]();
    downloadCsv(filename, rows);
  });
}

buildRiskCards();
applyTexts();
if (sessionStorage.getItem(TOKEN_KEY)) {
  signedIn(true);
  show();
} else {
  signedIn(false);
  document.body.dataset.state = 'signed-out';
}
