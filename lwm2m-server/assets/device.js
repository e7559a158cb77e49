// otafleet dashboard: one device's page. Its objects as a tree, named, typed and with units from
// the server's object models (GET /api/models, Discover answers annotated by the server), with
// the actions each resource allows; Object 5 in words; a live download bar from the server's
// record of blocks served; the update history and audit trail. Loaded after app.js, whose
// helpers (el, api, onEvent, every, current, ...) it uses.
'use strict';

// ---------- formatting ----------

function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function fmtRate(bps) {
  return bps === null || bps === undefined ? 'measuring …' : `${fmtBytes(Math.round(bps))}/s`;
}

function fmtEta(s) {
  if (s === null || s === undefined) return 'estimating …';
  if (s < 1) return 'under a second';
  return `about ${duration(s * 1000)}`;
}

// A value as read: the JSON value, its units, and what it means (Object 5 codes).
function showValue(item) {
  if (!item) return '';
  const v = typeof item.value === 'string' ? item.value : JSON.stringify(item.value);
  return `${v}${item.units ? ` ${item.units}` : ''}${item.meaning ? ` — ${item.meaning}` : ''}`;
}

// "2.05", "/3/0/3 Firmware Version = 1.0.0" … for the free-path box.
function describeAnswer(r) {
  if (!r) return '';
  const lines = [`${r.code || ''}`];
  for (const i of r.values || []) lines.push(`${i.path}${i.name ? ` ${i.name}` : ''} = ${showValue(i)}  (${i.type})`);
  for (const x of r.resources || []) lines.push(`${x.path}${x.name ? ` ${x.name}` : ''}${x.operations !== undefined ? ` [${x.operations}]` : ''}`);
  if (r.location) lines.push(`location: ${r.location}`);
  return lines.join('\n');
}

// The LwM2M paths of a link-format text (`</1/0>,</3/0>` → ['/1/0', '/3/0']).
function parseLinks(text) {
  const out = [];
  for (const m of String(text || '').matchAll(/<([^>]*)>/g)) {
    if (/^\/\d+(\/\d+)*$/.test(m[1])) out.push(m[1]);
  }
  return out;
}

// ---------- the page ----------

async function deviceView(ep, gen) {
  const enc = encodeURIComponent(ep);
  const regBox = el('dl', { class: 'kv', testid: 'device-registration' });
  const tree = el('div', { class: 'tree', testid: 'device-objects' });
  const fwBox = el('dl', { class: 'kv', testid: 'device-fw' });
  const fwNote = el('span', { class: 'muted', testid: 'fw-note' });
  const dl = downloadCard(enc, gen);
  const history = el('tbody');
  const audit = el('div', { testid: 'device-audit' });
  const path = el('input', { type: 'text', value: '/3/0/3', testid: 'dm-path', size: 12 });
  const value = el('input', { type: 'text', placeholder: 'value (write) or arguments (execute)', testid: 'dm-value' });
  const out = el('pre', { class: 'out', testid: 'dm-result' }, 'Read, write, execute or discover any path of this device.');

  // One device-management call; the answer (or the server's reason for refusing) goes to `show`.
  async function dm(kind, p, v, show) {
    const lp = p.replace(/^\/+/, '');
    try {
      let r;
      if (kind === 'read') r = await api('GET', `/clients/${enc}/read/${lp}`);
      else if (kind === 'write') r = await api('POST', `/clients/${enc}/write/${lp}`, { value: v });
      else if (kind === 'execute') r = await api('POST', `/clients/${enc}/execute/${lp}`, v ? { args: v } : {});
      else if (kind === 'observe') r = await api('POST', `/clients/${enc}/observe/${lp}`);
      else r = await api('GET', `/clients/${enc}/discover/${lp}`);
      return current(gen) ? r : null;
    } catch (e) {
      if (current(gen) && show) show(`${kind} /${lp} refused: ${e.message}`, true);
      return null;
    }
  }

  async function freePath(kind) {
    out.textContent = `${kind} ${path.value} …`;
    const r = await dm(kind, path.value, value.value, (msg) => { out.textContent = msg; });
    if (r) out.textContent = describeAnswer(r);
  }

  $('view').append(
    el('p', {}, el('a', { href: '#/fleet' }, '← Fleet')),
    el('h1', { testid: 'device-endpoint' }, ep),
    el('div', { class: 'row' },
      el('div', { class: 'card' }, el('h2', {}, 'Registration'), regBox),
      el('div', { class: 'card' },
        el('h2', {}, 'Firmware update (Object 5)'), fwBox,
        el('div', { class: 'toolbar' }, el('button', { testid: 'fw-refresh', onclick: () => loadFw() }, 'Read again'), fwNote)),
      dl.card),
    el('div', { class: 'card' },
      el('h2', {}, 'Objects'),
      el('p', { class: 'muted' }, 'What the device registered, named from the LwM2M object models. Open an instance to read its resources; each offers the operations its definition allows.'),
      tree),
    el('div', { class: 'card' },
      el('h2', {}, 'Any path'),
      el('div', { class: 'toolbar' }, path, value),
      el('div', { class: 'toolbar' },
        el('button', { testid: 'dm-read', onclick: () => freePath('read') }, 'Read'),
        el('button', { testid: 'dm-write', onclick: () => freePath('write') }, 'Write'),
        el('button', { testid: 'dm-execute', onclick: () => freePath('execute') }, 'Execute'),
        el('button', { testid: 'dm-discover', onclick: () => freePath('discover') }, 'Discover')),
      out),
    el('div', { class: 'card' },
      el('h2', {}, 'Update history'),
      el('table', { testid: 'device-history' },
        el('thead', {}, el('tr', {}, ...['job', 'release', 'status', 'State', 'Update Result', 'PkgVersion', 'attempts', 'bytes', 'started', 'error', ''].map((h) => el('th', {}, h)))),
        history),
      audit));

  // The registration, again after each registration event (a reboot registers anew).
  async function loadRegistration() {
    let r = null;
    try {
      r = await api('GET', `/clients/${enc}`);
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    if (!current(gen)) return null;
    if (!r) {
      regBox.replaceChildren(el('p', { class: 'error' }, `${ep} is not registered (now).`));
      return null;
    }
    const kv = [
      ['address', r.address], ['registration id', r.reg_id], ['LwM2M version', r.lwm2m_version], ['binding', r.binding],
      ['queue mode', r.queue_mode ? 'yes' : 'no'], ['lifetime', `${r.lifetime_s} s`],
      ['registered', fmtTime(r.registered_at_ms)], ['last update', `${fmtTime(r.updated_at_ms)} (${ago(r.updated_at_ms)})`],
    ];
    regBox.replaceChildren(...kv.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { class: 'mono' }, v)]));
    return r;
  }
  const reg = await loadRegistration();
  if (!current(gen)) return;
  if (reg) {
    const models = await api('GET', '/models').catch(() => []);
    if (!current(gen)) return;
    objectTree(tree, reg.objects, new Map(models.map((m) => [m.id, m])), dm, gen);
  }

  // Object 5 from a read of /5/0: each value with its name and meaning, kept current by
  // notifications when the update job observes State and Update Result.
  let fwItems = {};
  function showFw(items) {
    fwItems = items;
    const row = (p, label, testid) => [el('dt', {}, label), el('dd', { testid }, items[p] ? showValue(items[p]) : '—')];
    fwBox.replaceChildren(
      ...row('/5/0/3', 'State', 'fw-state'),
      ...row('/5/0/5', 'Update Result', 'fw-result'),
      ...row('/5/0/6', 'PkgName', 'fw-pkg-name'),
      ...row('/5/0/7', 'PkgVersion', 'fw-pkg-version'),
      ...row('/5/0/1', 'Package URI', 'fw-uri'));
  }
  async function loadFw() {
    fwNote.textContent = 'reading /5/0 …';
    const r = await dm('read', '/5/0', null, (msg) => { fwNote.textContent = msg; });
    if (!r) return;
    showFw(Object.fromEntries((r.values || []).map((i) => [i.path, i])));
    fwNote.textContent = `read at ${new Date().toLocaleTimeString()}`;
  }

  async function loadHistory() {
    const jobs = await api('GET', '/jobs');
    if (!current(gen)) return;
    const mine = [];
    for (const j of jobs) for (const d of j.devices) if (d.endpoint === ep) mine.push([j, d]);
    mine.sort((a, b) => b[0].id - a[0].id);
    const code = (n, name) => (n === null ? '—' : `${name || 'unknown'} (${n})`);
    history.replaceChildren(...mine.map(([j, d]) => el('tr', { testid: 'history-row' },
      el('td', {}, `#${j.id}`),
      el('td', { class: 'mono' }, `${j.release_version || ''} ${j.release_id}`),
      el('td', {}, badge(d.status)),
      el('td', {}, code(d.state, d.state_name)),
      el('td', {}, code(d.result, d.result_name)),
      el('td', { class: 'mono' }, d.pkg_version || ''),
      el('td', { class: 'num' }, d.attempts),
      el('td', { class: 'num' }, `${fmtBytes(d.bytes_done)} of ${fmtBytes(d.bytes_total)}`, sentNote(d)),
      el('td', {}, fmtTime(d.started_at_ms)),
      el('td', { class: 'error' }, d.error || ''),
      el('td', {}, el('button', { testid: `audit-${j.id}`, onclick: () => loadAudit(j.id) }, 'audit trail')))));
    if (!mine.length) history.replaceChildren(el('tr', {}, el('td', { colspan: 11, class: 'muted' }, 'no update jobs for this device')));
  }

  // What the job sent (issue 15): a delta and the bytes it saved, or the full image after a
  // delta was refused.
  function sentNote(d) {
    if (d.sent === 'delta') return el('div', { class: 'muted', testid: 'sent-note' }, `delta, saved ${fmtBytes(d.bytes_saved)}`);
    if (d.fallback) return el('div', { class: 'muted', testid: 'sent-note', title: d.fallback }, 'full image (delta refused)');
    return '';
  }

  async function loadAudit(jobId) {
    const lines = await api('GET', `/jobs/${jobId}/audit`);
    if (!current(gen)) return;
    audit.replaceChildren(el('h3', {}, `Audit trail of job #${jobId} for ${ep}`),
      el('table', { testid: 'audit-table' },
        el('thead', {}, el('tr', {}, el('th', {}, 'time'), el('th', {}, 'what'), el('th', {}, 'detail'))),
        el('tbody', {}, ...lines.filter((a) => !a.endpoint || a.endpoint === ep).map((a) =>
          el('tr', { testid: 'audit-row', 'data-event': a.event },
            el('td', {}, fmtTime(a.at_ms)), el('td', {}, a.what || a.event), el('td', {}, a.detail || ''))))));
  }

  const reloadHistory = debounce(() => loadHistory().catch((e) => flash(e.message)), 500);
  const reloadRegistration = debounce(() => loadRegistration().catch((e) => flash(e.message)), 300);
  onEvent((ev) => {
    if (ev.endpoint !== ep) return;
    if (ev.type === 'notification' && ev.path && ev.path.startsWith('/5/0/')) {
      const items = { ...fwItems };
      for (const i of Array.isArray(ev.value) ? ev.value : []) items[i.path] = i;
      showFw(items);
    }
    if (ev.type === 'job') {
      // The job's own view of State and Update Result (it polls when notifications stop).
      const items = { ...fwItems };
      if (ev.state !== null) items['/5/0/3'] = { value: ev.state, meaning: ev.state_name };
      if (ev.result !== null) items['/5/0/5'] = { value: ev.result, meaning: ev.result_name };
      showFw(items);
      if (['succeeded', 'failed', 'cancelled'].includes(ev.status)) loadFw();
    }
    if (ev.type === 'job' || ev.type === 'campaign-device') reloadHistory();
    if (ev.type === 'registered' || ev.type === 'updated') reloadRegistration();
  });
  await loadHistory();
  if (reg) loadFw();
}

// ---------- objects as a tree ----------

// One <details> per registered object, named from its model, with its instances; opening an
// instance discovers and reads it.
function objectTree(box, objectLinks, models, dm, gen) {
  const byObject = new Map();
  for (const p of parseLinks(objectLinks)) {
    const [o, i] = p.split('/').slice(1).map(Number);
    if (!byObject.has(o)) byObject.set(o, []);
    if (i !== undefined) byObject.get(o).push(i);
  }
  box.replaceChildren(...[...byObject.entries()].sort((a, b) => a[0] - b[0]).map(([o, instances]) => {
    const m = models.get(o);
    const body = el('div', { class: 'instances' });
    const node = el('details', { class: 'object', testid: `object-${o}` },
      el('summary', {},
        el('strong', { testid: `object-name-${o}` }, m ? m.name : `Object ${o}`),
        el('span', { class: 'muted' }, ` object ${o}${m ? '' : ' (no model: by number)'}`),
        el('span', { class: 'muted' }, ` · ${instances.length} instance${instances.length === 1 ? '' : 's'}`)),
      body);
    for (const i of instances) body.append(instanceNode(`/${o}/${i}`, dm, gen));
    if (!instances.length) body.append(el('p', { class: 'muted' }, 'no instance registered'));
    return node;
  }));
}

function instanceNode(ipath, dm, gen) {
  const rows = el('tbody');
  const msg = el('p', { class: 'muted', testid: `inst-msg-${ipath}` });
  const table = el('table', { class: 'resources', testid: `resources-${ipath}`, hidden: true },
    el('thead', {}, el('tr', {}, ...['resource', 'value', 'type', 'operations', 'actions'].map((h) => el('th', {}, h)))),
    rows);
  let loaded = false;
  const open = el('button', { testid: `inst-${ipath}`, onclick: () => load() }, `instance ${ipath.split('/')[2]} (${ipath})`);

  async function load() {
    msg.textContent = `discovering and reading ${ipath} …`;
    const show = (text) => { msg.textContent = text; };
    const [disc, read] = await Promise.all([dm('discover', ipath, null, show), dm('read', ipath, null, show)]);
    if (!current(gen)) return;
    const values = new Map();
    for (const item of (read && read.values) || []) {
      const rp = item.path.split('/').slice(0, 4).join('/');
      if (!values.has(rp)) values.set(rp, []);
      values.get(rp).push(item);
    }
    // The resources the device has (Discover); without an answer, those it sent values of.
    let res = ((disc && disc.resources) || []).filter((r) => r.path.split('/').length === 4);
    if (!res.length) res = [...values.keys()].map((p) => ({ path: p }));
    rows.replaceChildren(...res.map((r) => resourceRow(r, values.get(r.path) || [], dm)));
    table.hidden = false;
    loaded = true;
    msg.textContent = `${res.length} resources; read at ${new Date().toLocaleTimeString()}`;
    open.textContent = `read ${ipath} again`;
  }
  onEvent((ev) => {
    // Notifications of an observed resource update its row.
    if (!loaded || ev.type !== 'notification' || !ev.path || !ev.path.startsWith(`${ipath}/`)) return;
    const cell = rows.querySelector(`[data-testid="res-value-${ev.path}"]`);
    if (cell && Array.isArray(ev.value)) cell.textContent = ev.value.map(showValue).join(', ');
  });
  return el('div', { class: 'instance' }, open, msg, table);
}

// One resource: name and path, value with units, type, operations, and the actions allowed.
function resourceRow(r, items, dm) {
  const p = r.path;
  const ops = r.operations === undefined ? null : r.operations; // null: no model, all offered
  const can = (op) => ops === null || ops.includes(op);
  // A multiple-instance resource shows each instance as [id] value.
  const shown = (list) => (r.multiple || list.length > 1
    ? list.map((i) => `[${i.path.split('/')[4]}] ${showValue(i)}`).join(', ')
    : showValue(list[0]));
  const valueCell = el('td', { class: 'mono', testid: `res-value-${p}` }, shown(items));
  const msg = el('div', { class: 'muted small', testid: `res-msg-${p}` });
  const say = (text, isError) => {
    msg.textContent = text;
    msg.className = isError ? 'error small' : 'muted small';
  };
  const reread = async (before) => {
    const v = await dm('read', p, null, say);
    if (v) {
      valueCell.textContent = shown(v.values || []);
      say(`${before || ''}read ${new Date().toLocaleTimeString()}`);
    }
  };
  const actions = el('td', { class: 'actions' });
  if (can('R')) {
    actions.append(el('button', { testid: `res-read-${p}`, onclick: () => reread() }, 'Read'), ' ',
      el('button', { testid: `res-observe-${p}`, onclick: async () => { if (await dm('observe', p, null, say)) say('observing: changes appear here'); } }, 'Observe'), ' ');
  }
  if (can('W')) {
    const input = el('input', { type: 'text', size: 10, placeholder: r.type || 'value', testid: `res-input-${p}` });
    actions.append(input, ' ', el('button', {
      testid: `res-write-${p}`,
      onclick: async () => {
        say(`writing ${input.value} …`);
        const w = await dm('write', p, input.value, say);
        if (!w) return;
        say(`written (${w.code})`);
        if (can('R')) await reread(`written (${w.code}), `);
      },
    }, 'Write'), ' ');
  }
  if (can('E')) {
    actions.append(el('button', {
      testid: `res-exec-${p}`,
      onclick: async () => { const x = await dm('execute', p, null, say); if (x) say(`executed (${x.code})`); },
    }, 'Execute'));
  }
  const typeText = r.type ? `${r.type}${r.multiple ? ', multiple' : ''}` : '';
  return el('tr', { testid: `res-row-${p}` },
    el('td', {}, el('span', { testid: `res-name-${p}` }, r.name || `resource ${p.split('/')[3]}`), ' ', el('span', { class: 'muted mono' }, p)),
    valueCell,
    el('td', {}, typeText),
    el('td', { class: 'mono', title: 'R read, W write, E execute' }, ops === null ? '?' : (ops || '—')),
    el('td', {}, actions, msg));
}

// ---------- live download ----------

// The device's download as the server saw it: distinct bytes served, rate and time left, from
// `download` events (at most five renders a second) and a 2 s poll of GET /clients/{ep}/download.
function downloadCard(enc, gen) {
  const barFill = el('span', { class: 'c-running' });
  const bar = el('div', { class: 'bar big', testid: 'download-bar', 'data-done': '0', 'data-total': '0' }, barFill);
  const bytes = el('dd', { testid: 'download-bytes' }, '—');
  const percent = el('dd', { testid: 'download-percent' }, '—');
  const rate = el('dd', { testid: 'download-rate' }, '—');
  const eta = el('dd', { testid: 'download-eta' }, '—');
  const requests = el('dd', { testid: 'download-requests' }, '—');
  const note = el('p', { class: 'muted', testid: 'download-note' }, 'no download in progress');
  const card = el('div', { class: 'card', testid: 'download-card' },
    el('h2', {}, 'Download (live)'), bar,
    el('dl', { class: 'kv' },
      el('dt', {}, 'served'), bytes, el('dt', {}, 'done'), percent, el('dt', {}, 'rate'), rate,
      el('dt', {}, 'time left'), eta, el('dt', {}, 'block requests'), requests),
    note);
  let last = 0;
  let pending = null;
  let newest = null;
  // A poll answered late may carry an older report than an event already shown: one transfer's
  // reports are ordered by their request count, transfers by when they started.
  function isStale(p) {
    if (!newest || !p) return false;
    if (p.started_at_ms !== newest.started_at_ms) return p.started_at_ms < newest.started_at_ms;
    return p.requests < newest.requests;
  }
  function show(p) {
    if (!p) {
      note.textContent = 'no download in progress';
      return;
    }
    const pc = p.bytes_total ? (100 * p.bytes_done) / p.bytes_total : 0;
    barFill.style.width = `${pc}%`;
    bar.setAttribute('data-done', String(p.bytes_done));
    bar.setAttribute('data-total', String(p.bytes_total));
    bytes.textContent = `${fmtBytes(p.bytes_done)} of ${fmtBytes(p.bytes_total)} (distinct blocks)`;
    percent.textContent = `${pc.toFixed(1)} %`;
    rate.textContent = fmtRate(p.rate_bps);
    eta.textContent = p.bytes_done >= p.bytes_total ? 'done' : fmtEta(p.eta_s);
    if (p.requests !== undefined) requests.textContent = `${p.requests}, ${p.block_size} B each`;
    note.textContent = `release ${p.release_id || ''}, updated ${new Date().toLocaleTimeString()}`;
  }
  function throttled(p) {
    if (isStale(p)) return;
    newest = p;
    const now = Date.now();
    clearTimeout(pending);
    if (now - last >= 200) {
      last = now;
      show(p);
    } else pending = setTimeout(() => show(p), 200);
  }
  const decoded = decodeURIComponent(enc);
  onEvent((ev) => {
    if (ev.type === 'download' && ev.endpoint === decoded) throttled({ ...ev });
  });
  const poll = async () => {
    try {
      const p = await api('GET', `/clients/${enc}/download`);
      if (current(gen) && p) throttled(p);
    } catch {
      // The device may have gone; the next poll tries again.
    }
  };
  every(2000, poll);
  poll();
  return { card };
}
