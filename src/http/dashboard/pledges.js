// The dashboard's pledge views: a lookup of the registrations the viewer's token may see
// (`#/pledges?q=…`), one pledge (`#/pledge/<id>`) and its printable certificate
// (`#/pledge/<id>/certificate`). The certificate is laid out like CNIPA's pledge registration
// notice (知识产权质押登记通知书): the registration's particulars from GetPledge, then a verifiable
// record from GetPledgeCertificate (the signed tree head, the pledge's journal entries and the
// digest over them, with the digest as a QR code), so that a bank or court holding the paper can
// check it offline with `ipledger certificate verify`.
//
// Loaded before app.js: these functions call app.js's helpers (t, call, element, svg, formatDate…)
// when they run, and nothing here runs on load.
'use strict';

/// A pledge id (UUID), as the lookup recognises one.
const PLEDGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/// A Unified Social Credit Code (GB 32100-2015): the lookup lists the pledges of that pledgor and
/// of that pledgee.
const CREDIT_CODE = /^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$/;
/// Pledges a lookup lists at most: one page of ListPledges; a note asks to narrow the query.
const PLEDGE_LIST_MAX = 100;
/// The QR code's quiet zone, in modules (ISO/IEC 18004 asks for 4: phones read it off paper).
const QR_QUIET_MODULES = 4;
/// China Standard Time, UTC+8 all year: the signing time is printed as the offices read time.
const CHINA_OFFSET_MS = 8 * 3600 * 1000;

/// Right kinds as the notices name them (专利 with its type, 商标, 著作权).
const RIGHT_KIND_LABELS = {
  INVENTION_PATENT: 'rightInvention',
  UTILITY_MODEL: 'rightUtilityModel',
  DESIGN_PATENT: 'rightDesign',
  TRADEMARK: 'rightTrademark',
  COPYRIGHT: 'rightCopyright',
};
const RELEASE_REASON_LABELS = {
  REPAID: 'releaseRepaid',
  ENFORCED: 'releaseEnforced',
  WAIVED: 'releaseWaived',
  CONTRACT_INVALID: 'releaseContractInvalid',
  OTHER: 'releaseOther',
};
const EVENT_LABELS = {
  PLEDGE_REGISTERED: 'eventRegistered',
  PLEDGE_CHANGED: 'eventChanged',
  PLEDGE_RELEASED: 'eventReleased',
};

const getPledge = (id) => call('ipledger.v1.PledgeService/GetPledge', { id });
const listPledges = (filter) =>
  call('ipledger.v1.PledgeService/ListPledges', { pageSize: PLEDGE_LIST_MAX, ...filter });

const pledgeHash = (id) => `#/pledge/${encodeURIComponent(id)}`;
const certificateHash = (id) => `${pledgeHash(id)}/certificate`;

/// A link as a table cell's or a field's content.
function link(text, hash, className) {
  const a = element('a', text, className);
  a.href = hash;
  return a;
}

/// A cell or field holding `value`: a text, an amount ({ text, title }) or elements.
function valueElement(tag, value, className) {
  if (value instanceof Node || Array.isArray(value)) {
    const e = element(tag, undefined, className);
    e.append(...[value].flat());
    return e;
  }
  return element(tag, value, className);
}

// --- Words and figures of a registration ---------------------------------------------------------

/// An amount as the notices write it: in 万元, exactly (yuan to the fen is 万元 to 6 decimals; the
/// zeros at the end are dropped), then the exact yuan.
function wanAndYuan(amount) {
  const sign = decimalSign();
  const [whole, fraction = ''] = formatScaled(scaled(amount || '0', 4, 6), 6).split(sign);
  const digits = fraction.replace(/0+$/, '');
  const wan = digits ? `${whole}${sign}${digits}` : whole;
  return t('amountWanYuan', { wan, yuan: formatScaled(scaled(amount || '0', 0, 2), 2) });
}

/// A party: its name, then its credit code on a line of its own.
function partyValue(party) {
  const p = party || {};
  return [
    element('span', p.name || '', 'party-name'),
    element('span', t('creditCodeOf', { code: p.creditCode || '' }), 'party-code'),
  ];
}

/// 有效, or 已注销 with its date and reason.
function statusText(pledge) {
  if (pledge.status !== 'RELEASED') return t('statusActive');
  const reason = RELEASE_REASON_LABELS[pledge.releaseReason];
  return t('statusReleased', {
    date: pledge.releasedOn ? formatDate(pledge.releasedOn) : '–',
    reason: reason ? t(reason) : '–',
  });
}

/// A change's before and after, or "unchanged" when this change left the value alone.
function beforeAfter(before, after, format) {
  if (!after || before === after) return t('unchanged');
  return t('beforeAfter', { before: before ? format(before) : '–', after: format(after) });
}

/// The date a change applies from (its business date), else the day it was recorded (UTC+8).
const changeDate = (change) =>
  change.effectiveOn ? formatDate(change.effectiveOn) : chinaTime(change.changeTime).slice(0, 10);

/// A Timestamp of the API as China time, to the second: "2025-06-01 16:00:05".
function chinaTime(timestamp) {
  // Whole seconds: the signed microseconds are in the certificate's JSON, not on paper.
  const ms = Date.parse(String(timestamp || '').replace(/\.\d+/, ''));
  if (Number.isNaN(ms)) return '–';
  const shifted = new Date(ms + CHINA_OFFSET_MS).toISOString();
  return `${shifted.slice(0, 10)} ${shifted.slice(11, 19)}`;
}

/// Rows of a two-column table (label, value), each marked with its field for tests and styles.
function fieldTable(rows, className) {
  const table = element('table', undefined, className);
  const body = element('tbody');
  for (const [field, value, valueClass] of rows) {
    const tr = element('tr');
    tr.dataset.field = field;
    tr.append(element('th', t(field)), valueElement('td', value, valueClass));
    body.append(tr);
  }
  table.append(body);
  return table;
}

/// A table with a header row, its rows given as arrays of cell values.
function listTable(id, headers, rows) {
  const table = element('table', undefined, 'list');
  table.id = id;
  const head = element('thead');
  const tr = element('tr');
  tr.append(...headers.map((h) => element('th', t(h))));
  head.append(tr);
  const body = element('tbody');
  for (const row of rows) {
    const line = element('tr');
    line.append(...row.map((value) => valueElement('td', value)));
    body.append(line);
  }
  table.append(head, body);
  return table;
}

/// What the notice says of a registration: its particulars, the pledged rights and the changes.
function pledgeParticulars(pledge, prefix) {
  const particulars = fieldTable(
    [
      ['registrationNumber', pledge.registrationNumber],
      ['pledgor', partyValue(pledge.pledgor)],
      // A co-owned right is pledged by every owner: the notice names each (共同出质人).
      ...(pledge.coPledgors || []).map((party) => ['coPledgor', partyValue(party)]),
      ['pledgee', partyValue(pledge.pledgee)],
      ['principalAmount', wanAndYuan(pledge.securedAmount)],
      ['debtTerm', t('termRange', { from: formatDate(pledge.debtTermStart), to: formatDate(pledge.debtTermEnd) })],
      ['registeredOn', formatDate(pledge.registeredOn)],
      ['status', statusText(pledge)],
    ],
    'particulars',
  );
  const rights = (pledge.rights || []).map((r, i) => [
    String(i + 1),
    RIGHT_KIND_LABELS[r.kind] ? t(RIGHT_KIND_LABELS[r.kind]) : r.kind,
    r.number,
    r.title || '',
  ]);
  const parts = [
    particulars,
    element('h3', t('pledgedObjects')),
    listTable(`${prefix}-rights`, ['rightIndex', 'rightKind', 'rightNumber', 'rightTitle'], rights),
  ];
  const changes = (pledge.changes || []).map((c) => [
    changeDate(c),
    beforeAfter(c.securedAmountBefore, c.securedAmountAfter, wanAndYuan),
    beforeAfter(c.debtTermEndBefore, c.debtTermEndAfter, formatDate),
  ]);
  if (changes.length) {
    parts.push(
      element('h3', t('changesHeading')),
      listTable(`${prefix}-changes`, ['changeDate', 'principalAmount', 'debtTermEnd'], changes),
    );
  }
  return parts;
}

// --- The lookup ----------------------------------------------------------------------------------

/// What the lookup's query asks for: a pledge id, a party's credit code, else a right's number; an
/// empty query lists the first pledges in the token's scope.
async function loadPledgeList(route) {
  const query = (route.params.get('q') || '').trim();
  const code = query.toUpperCase();
  let answers;
  if (PLEDGE_ID.test(query)) {
    answers = [{ pledges: [await getPledge(query)] }];
  } else if (CREDIT_CODE.test(code)) {
    answers = await Promise.all([
      listPledges({ pledgorCreditCode: code }),
      listPledges({ pledgeeCreditCode: code }),
    ]);
  } else {
    answers = [await listPledges(query ? { rightNumber: query } : {})];
  }
  await ensureScopeName();
  const pledges = new Map();
  for (const answer of answers) for (const p of answer.pledges || []) pledges.set(p.id, p);
  return { query, pledges: [...pledges.values()], more: answers.some((a) => a.nextPageToken) };
}

const PLEDGE_LIST_COLUMNS = [
  { label: 'registrationNumber', className: 'name', cell: (p) => link(p.registrationNumber, pledgeHash(p.id)) },
  { label: 'pledgor', cell: (p) => (p.pledgor || {}).name || '' },
  { label: 'pledgee', cell: (p) => (p.pledgee || {}).name || '' },
  { label: 'securedAmount', className: 'number', cell: (p) => money(p.securedAmount) },
  { label: 'registeredOn', className: 'date', cell: (p) => formatDate(p.registeredOn) },
  { label: 'status', className: 'status', cell: (p) => statusText(p) },
  {
    label: 'actions',
    className: 'actions',
    cell: (p) => link(t('certificateAction'), certificateHash(p.id), 'certificate-action'),
  },
];

function renderPledgeList(data) {
  tableHeaders('pledge-list', PLEDGE_LIST_COLUMNS);
  const body = $('pledge-list').querySelector('tbody');
  body.replaceChildren();
  for (const pledge of data.pledges) {
    const tr = element('tr');
    tr.dataset.key = pledge.id;
    tr.append(...PLEDGE_LIST_COLUMNS.map((c) => valueElement('td', c.cell(pledge), c.className)));
    body.append(tr);
  }
  $('pledge-list-none').hidden = data.pledges.length > 0;
  $('pledge-list-more').hidden = !data.more;
}

// --- One pledge ----------------------------------------------------------------------------------

async function loadPledge(route) {
  const [pledge] = await Promise.all([getPledge(route.id), ensureScopeName()]);
  return { pledge };
}

function renderPledge(data) {
  const pledge = data.pledge;
  $('pledge-heading').textContent = t('pledgeHeading', { number: pledge.registrationNumber });
  $('pledge-certificate').href = certificateHash(pledge.id);
  $('pledge-body').replaceChildren(...pledgeParticulars(pledge, 'pledge'));
}

// --- The certificate -----------------------------------------------------------------------------

/// The pledge and its certificate. They are two reads: a change between them would print
/// particulars that the proof does not cover, so both are read again until the pledge's version
/// (one per registration, change and release) counts the certificate's entries.
async function loadCertificate(route) {
  await ensureScopeName();
  for (let attempt = 1; ; attempt += 1) {
    const pledge = await getPledge(route.id);
    const answer = await callText('ipledger.v1.PledgeService/GetPledgeCertificate', { id: route.id });
    const entries = (answer.json.entries || []).length;
    if (entries === Number(pledge.version || 0)) return { pledge, certificate: answer.json, text: answer.text };
    if (attempt === 3) throw new Error(t('certificateMismatch', { entries, version: pledge.version }));
  }
}

/// The QR code of `text` (error correction M) as an inline SVG: one path of dark modules on white,
/// drawn from the vendored generator's matrix (no data: URL, which the page's CSP refuses).
function qrSvg(text, label) {
  const qr = qrcode(0, 'M');
  qr.addData(text);
  qr.make();
  const modules = qr.getModuleCount();
  const size = modules + 2 * QR_QUIET_MODULES;
  let path = '';
  for (let row = 0; row < modules; row += 1) {
    for (let col = 0; col < modules; col += 1) {
      if (qr.isDark(row, col)) path += `M${col + QR_QUIET_MODULES} ${row + QR_QUIET_MODULES}h1v1h-1z`;
    }
  }
  const image = svg('svg', {
    viewBox: `0 0 ${size} ${size}`,
    role: 'img',
    'aria-label': label,
    class: 'qr',
    'shape-rendering': 'crispEdges',
  });
  image.dataset.content = text;
  image.dataset.modules = String(modules);
  image.append(svg('rect', { width: size, height: size, fill: '#fff' }), svg('path', { d: path, fill: '#000' }));
  return image;
}

/// The verifiable record: what the certificate proves and how to check it offline.
function proofSection(certificate) {
  const head = certificate.treeHead || {};
  const entries = (certificate.entries || []).map((e) =>
    t('entryItem', { sequence: e.sequence, event: EVENT_LABELS[e.event] ? t(EVENT_LABELS[e.event]) : e.event }),
  );
  const fields = fieldTable(
    [
      ['treeSize', head.treeSize || '0'],
      ['rootHash', head.rootHash || '', 'hex'],
      ['signedAt', t('chinaTime', { time: chinaTime(head.time) })],
      ['publicKey', head.publicKey || '', 'hex'],
      ['entrySequences', entries.join(t('listSeparator'))],
      ['digest', certificate.digest || '', 'hex'],
      ['cosignatures', String((head.cosignatures || []).length)],
    ],
    'proof-fields',
  );
  const figure = element('figure', undefined, 'qr-figure');
  figure.append(qrSvg(certificate.digest || '', t('qrLabel')), element('figcaption', t('qrCaption')));
  const body = element('div', undefined, 'proof-body');
  body.append(fields, figure);
  const verify = element('p', undefined, 'verify');
  verify.append(t('verifyBefore'), element('code', t('verifyCommand')), t('verifyAfter'));
  const section = element('section', undefined, 'proof');
  section.append(element('h3', t('proofHeading')), body, verify);
  return section;
}

/// The download's name: the registration number, kept to characters every file system takes.
const certificateFileName = (number) => `pledge-${String(number).replace(/[\\/:*?"<>|\s]+/g, '_')}.certificate.json`;

/// The object URL of the certificate downloaded last, released when another replaces it.
let certificateUrl;

function renderCertificate(data) {
  const { pledge, certificate } = data;
  $('certificate-sheet').replaceChildren(
    element('h2', t('certificateTitle'), 'certificate-title'),
    ...pledgeParticulars(pledge, 'certificate'),
    proofSection(certificate),
  );
  $('certificate-back').href = pledgeHash(pledge.id);
  // The answer's own bytes, as the server sent them: what `ipledger certificate verify` reads.
  if (certificateUrl) URL.revokeObjectURL(certificateUrl);
  certificateUrl = URL.createObjectURL(new Blob([data.text], { type: 'application/json' }));
  const download = $('certificate-download');
  download.href = certificateUrl;
  download.download = certificateFileName(certificate.registrationNumber);
}
