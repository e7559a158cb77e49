// otafleet dashboard: vanilla JS, no build step, nothing loaded from elsewhere (the server's
// Content-Security-Policy allows only its own origin). Every value shown comes from /api and is
// put in the page with textContent, never parsed as HTML.
'use strict';

const TOKEN_KEY = 'otafleet-admin-token';
const SVG_NS = 'http://www.w3.org/2000/svg'; // a namespace name, not a URL that is fetched
const OUTCOMES = ['succeeded', 'failed', 'unreachable', 'cancelled', 'skipped', 'running', 'queued'];
const FINAL = new Set(['completed', 'halted', 'aborted']);

let token = sessionStorage.getItem(TOKEN_KEY) || '';
let generation = 0; // bumped on every navigation: late answers for an old view are dropped
let viewListeners = [];
let viewTimers = [];
let events = { ctl: null, count: 0 };

// ---------- small DOM helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'testid') e.setAttribute('data-testid', v);
    else if (k === 'class') e.setAttribute('class', v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'value') e.value = v;
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
}

function append(e, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString() : '—';
}

function ago(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function badge(state, testid) {
  return el('span', { class: `state ${state}`, testid }, state);
}

function debounce(fn, ms) {
  let t = null;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

function flash(msg) {
  const f = $('flash');
  f.textContent = msg || '';
  f.hidden = !msg;
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body instanceof FormData) {
    opts.body = body; // the browser sets the multipart boundary
  } else if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(`/api${path}`, opts);
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (r.status === 401) {
    signOut('The server no longer accepts this token: sign in again.');
    throw new ApiError(401, 'wrong admin token');
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.error) || `HTTP ${r.status}`);
  return data;
}

// ---------- sign in / out ----------

async function signIn(candidate) {
  const err = $('login-error');
  err.hidden = true;
  let r;
  try {
    r = await fetch('/api/clients', { headers: { Authorization: `Bearer ${candidate}` } });
  } catch (e) {
    err.textContent = `Cannot reach the server: ${e.message}`;
    err.hidden = false;
    return false;
  }
  if (r.status === 401) {
    err.textContent = 'The server refused this admin token. Check it (lwm2m-server serve prints it once at its first start, or it is the --admin-token you gave) and try again.';
    err.hidden = false;
    return false;
  }
  if (!r.ok) {
    err.textContent = `The server answered HTTP ${r.status}.`;
    err.hidden = false;
    return false;
  }
  token = candidate;
  sessionStorage.setItem(TOKEN_KEY, token);
  showApp();
  return true;
}

function signOut(message) {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  stopEvents();
  clearView();
  $('app').hidden = true;
  $('login').hidden = false;
  const err = $('login-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('token').value = '';
  $('token').focus();
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  startEvents();
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/fleet';
  else render();
}

// ---------- the event stream ----------
// EventSource cannot send an Authorization header, so the stream is read with fetch() and the
// same header as every other call: the token never appears in a URL (logs, history, Referer).
// fetch() does not reconnect by itself: this loop does, with back-off, and tells the views to
// reload once it is back (they may have missed events meanwhile).

function setEventStatus(state) {
  const s = $('events-status');
  s.textContent = `events: ${state}`;
  s.className = `pill ${state === 'live' ? 'live' : state === 'connecting' ? '' : 'down'}`;
}

function stopEvents() {
  if (events.ctl) events.ctl.abort();
  events.ctl = null;
}

async function startEvents() {
  stopEvents();
  const ctl = new AbortController();
  events.ctl = ctl;
  let delay = 1000;
  while (!ctl.signal.aborted) {
    setEventStatus('connecting');
    try {
      const r = await fetch('/api/events', {
        headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
        signal: ctl.signal,
        cache: 'no-store',
      });
      if (r.status === 401) {
        signOut('The server no longer accepts this token: sign in again.');
        return;
      }
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      setEventStatus('live');
      delay = 1000;
      dispatch({ type: 'stream-open' });
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          handleEventBlock(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    if (ctl.signal.aborted) return;
    setEventStatus('reconnecting');
    await sleep(delay);
    delay = Math.min(delay * 2, 15000);
  }
}

function handleEventBlock(block) {
  const data = block
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(5).replace(/^ /, ''))
    .join('\n');
  if (!data) return; // keep-alive comments
  let ev;
  try {
    ev = JSON.parse(data);
  } catch {
    return;
  }
  events.count += 1;
  $('events-count').textContent = String(events.count);
  dispatch(ev);
}

function dispatch(ev) {
  for (const fn of viewListeners) {
    try {
      fn(ev);
    } catch (e) {
      console.error(e);
    }
  }
}

// ---------- routing ----------

function clearView() {
  generation += 1;
  viewListeners = [];
  for (const t of viewTimers) clearInterval(t);
  viewTimers = [];
  $('view').replaceChildren();
}

function onEvent(fn) {
  viewListeners.push(fn);
}

function every(ms, fn) {
  viewTimers.push(setInterval(fn, ms));
}

function render() {
  if (!token) return;
  clearView();
  flash('');
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const [name, arg] = [parts[0] || 'fleet', parts.slice(1).join('/')];
  for (const a of document.querySelectorAll('[data-nav]')) {
    const nav = a.getAttribute('data-nav');
    a.classList.toggle('active', nav === name || (nav === 'fleet' && name === 'device') || (nav === 'campaigns' && name === 'campaign'));
  }
  const gen = generation;
  const views = { fleet: fleetView, device: deviceView, releases: releasesView, campaigns: campaignsView, campaign: campaignView };
  const view = views[name] || fleetView;
  Promise.resolve(view(decodeURIComponent(arg || ''), gen)).catch((e) => {
    if (gen === generation && e.status !== 401) flash(e.message);
  });
}

const current = (gen) => gen === generation;

// ---------- fleet ----------

let fleetFilter = '';

async function fleetView(_arg, gen) {
  const stats = el('div', { class: 'grid' });
  const versions = el('tbody');
  const devices = el('tbody');
  const matching = el('span', { class: 'muted', testid: 'fleet-matching' });
  const progress = el('span', { class: 'muted', testid: 'fleet-read-progress' });
  const filter = el('input', {
    type: 'text', placeholder: 'filter endpoints (text or glob: sensor-*)', value: fleetFilter, testid: 'fleet-filter',
    oninput: debounce((e) => { fleetFilter = e.target.value; load(); }, 250),
  });
  const readButton = el('button', { testid: 'fleet-read-versions', onclick: () => readVersions() }, 'Read unknown versions');
  $('view').append(
    el('h1', {}, 'Fleet'),
    stats,
    el('div', { class: 'row' },
      el('div', { class: 'card', testid: 'fleet-versions-card' },
        el('h2', {}, 'Firmware versions'),
        el('table', { testid: 'fleet-versions' }, el('thead', {}, el('tr', {}, el('th', {}, 'version'), el('th', { class: 'num' }, 'devices'), el('th', {}, ''))), versions),
        el('p', { class: 'muted' }, 'Firmware version (/3/0/3) and model (/3/0/1) are read from each device when it registers (unless the server runs with --read-device-info off), and learnt from reads and campaign successes; "unknown" devices were never read.'))),
    el('div', { class: 'card' },
      el('h2', {}, 'Devices'),
      el('div', { class: 'toolbar' }, filter, el('button', { onclick: () => load(), testid: 'fleet-refresh' }, 'Refresh'), readButton, progress, matching),
      el('table', { testid: 'fleet-devices' },
        el('thead', {}, el('tr', {}, ...['endpoint', 'address', 'firmware version', 'model', 'mode', 'LwM2M version', 'lifetime', 'last update'].map((h) => el('th', {}, h)))),
        devices)));

  let last = null;
  async function load() {
    const q = new URLSearchParams({ filter: fleetFilter, limit: '1000' });
    const f = await api('GET', `/fleet?${q}`);
    if (!current(gen)) return;
    last = f;
    const known = f.versions.filter((v) => v.version !== null).reduce((a, v) => a + v.count, 0);
    stats.replaceChildren(
      stat(f.registered, 'registered', 'fleet-registered'),
      stat(f.queue_mode, 'in queue mode', 'fleet-queue-mode'),
      stat(f.asleep, 'asleep now', 'fleet-asleep'),
      stat(known, 'versions known', 'fleet-versions-known'));
    const max = Math.max(1, ...f.versions.map((v) => v.count));
    versions.replaceChildren(...f.versions.map((v) => el('tr', { testid: 'fleet-version-row' },
      el('td', { class: v.version === null ? 'muted' : 'mono' }, v.version === null ? 'unknown' : v.version),
      el('td', { class: 'num', testid: `fleet-version-count-${v.version === null ? 'unknown' : v.version}` }, v.count),
      el('td', {}, bar({ succeeded: v.count }, max)))));
    if (!f.versions.length) versions.replaceChildren(el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'no devices registered')));
    devices.replaceChildren(...f.devices.map((d) => el('tr', { testid: 'device-row', 'data-endpoint': d.endpoint },
      el('td', {}, el('a', { href: `#/device/${encodeURIComponent(d.endpoint)}`, testid: `device-link-${d.endpoint}` }, d.endpoint)),
      el('td', { class: 'mono' }, d.address),
      el('td', { class: 'mono', testid: `device-version-${d.endpoint}` }, d.firmware_version ?? el('span', { class: 'muted' }, 'unknown')),
      el('td', { testid: `device-model-${d.endpoint}` }, d.model ?? el('span', { class: 'muted' }, 'unknown')),
      el('td', {}, d.queue_mode ? badge(d.awake ? 'awake' : 'asleep') : 'always on'),
      el('td', {}, d.lwm2m_version),
      el('td', { class: 'num' }, `${d.lifetime_s} s`),
      el('td', { title: fmtTime(d.updated_at_ms) }, ago(d.updated_at_ms)))));
    matching.textContent = `${f.matching} of ${f.registered} shown${f.matching > f.devices.length ? ` (first ${f.devices.length})` : ''}`;
  }

  // Reads /3/0/3 of the listed devices whose version is unknown, a few at a time; the server
  // caches what it reads, so the counts above fill in.
  async function readVersions() {
    if (!last) return;
    const todo = last.devices.filter((d) => d.firmware_version === null && (!d.queue_mode || d.awake)).slice(0, 200);
    readButton.disabled = true;
    let done = 0;
    let failed = 0;
    const next = async () => {
      while (todo.length && current(gen)) {
        const d = todo.shift();
        try {
          await api('GET', `/clients/${encodeURIComponent(d.endpoint)}/read/3/0/3`);
        } catch {
          failed += 1;
        }
        done += 1;
        progress.textContent = `read ${done}${failed ? `, ${failed} failed` : ''}`;
      }
    };
    await Promise.all([next(), next(), next(), next()]);
    readButton.disabled = false;
    if (current(gen)) await load();
  }

  const reload = debounce(() => load().catch((e) => flash(e.message)), 500);
  onEvent((ev) => {
    if (['registered', 'deregistered', 'expired', 'moved', 'device-info', 'stream-open'].includes(ev.type)) reload();
    if (ev.type === 'campaign-device' && ev.status === 'succeeded') reload();
  });
  every(15000, reload); // asleep/awake changes without an event
  await load();
}

function stat(n, label, testid) {
  return el('div', { class: 'stat' }, el('span', { class: 'n', testid }, n), el('span', { class: 'l' }, label));
}

function bar(counts, total) {
  const b = el('div', { class: 'bar' });
  for (const k of OUTCOMES) {
    const n = counts[k] || 0;
    if (!n || !total) continue;
    const s = el('span', { class: `c-${k}`, title: `${k}: ${n}` });
    s.style.width = `${(100 * n) / total}%`;
    b.append(s);
  }
  return b;
}

// The device page (objects by name, live download, history) is in device.js.

// ---------- releases ----------

async function releasesView(_arg, gen) {
  const rows = el('tbody');
  const result = el('p', { testid: 'release-result' });
  const kind = el('select', { testid: 'release-kind', onchange: () => toggle() },
    el('option', { value: 'suit' }, 'SUIT envelope + image'), el('option', { value: 'plain' }, 'plain image + version'));
  const envelope = el('input', { type: 'file', testid: 'release-envelope' });
  const image = el('input', { type: 'file', testid: 'release-image', required: true });
  const version = el('input', { type: 'text', placeholder: '2.0.0', testid: 'release-version' });
  const envLabel = el('label', {}, 'SUIT envelope (suit create -o …)', envelope);
  const verLabel = el('label', {}, 'Version', version);
  function toggle() {
    envLabel.hidden = kind.value !== 'suit';
    verLabel.hidden = kind.value !== 'plain';
  }
  const form = el('form', { class: 'stack', testid: 'release-form', onsubmit: (e) => { e.preventDefault(); upload(); } },
    el('label', {}, 'Kind', kind), envLabel, el('label', {}, 'Image', image), verLabel,
    el('button', { type: 'submit', class: 'primary', testid: 'release-submit' }, 'Upload'), result);
  toggle();
  $('view').append(
    el('h1', {}, 'Releases'),
    el('div', { class: 'row' },
      el('div', { class: 'card' },
        el('table', { testid: 'releases-table' },
          el('thead', {}, el('tr', {}, ...['id', 'version', 'kind', 'sequence', 'image', 'vendor / class', 'added'].map((h) => el('th', {}, h)))),
          rows)),
      el('div', { class: 'card' }, el('h2', {}, 'Add a release'),
        el('p', { class: 'muted' }, 'A SUIT release is verified against the server\'s trust keys before it is stored.'), form)));

  async function upload() {
    const fd = new FormData();
    if (!image.files.length) {
      result.className = 'error';
      result.textContent = 'Choose the image file.';
      return;
    }
    if (kind.value === 'suit') {
      if (!envelope.files.length) {
        result.className = 'error';
        result.textContent = 'Choose the SUIT envelope file.';
        return;
      }
      fd.append('envelope', envelope.files[0]);
    } else {
      fd.append('version', version.value.trim());
    }
    fd.append('image', image.files[0]);
    result.className = 'muted';
    result.textContent = 'uploading …';
    try {
      const r = await api('POST', '/releases', fd);
      if (!current(gen)) return;
      result.className = 'ok';
      result.textContent = `${r.new ? 'Added' : 'Already there:'} release ${r.id} (${r.release.version || 'no version'})`;
      form.reset();
      toggle();
      await load();
    } catch (e) {
      if (!current(gen)) return;
      result.className = 'error';
      result.textContent = `Refused: ${e.message}`;
    }
  }

  async function load() {
    const list = await api('GET', '/releases');
    if (!current(gen)) return;
    rows.replaceChildren(...list.map((r) => el('tr', { testid: 'release-row', 'data-id': r.id },
      el('td', { class: 'mono' }, r.id),
      el('td', { class: 'mono' }, r.version || ''),
      el('td', {}, r.kind),
      el('td', { class: 'num' }, r.sequence_number ?? ''),
      el('td', { class: 'num' }, `${r.image_size} B`),
      el('td', { class: 'mono' }, r.vendor_id ? `${r.vendor_id} / ${r.class_id}` : ''),
      el('td', {}, fmtTime(r.added_at_ms)))));
    if (!list.length) rows.replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'no releases yet')));
  }
  await load();
}

// ---------- campaigns ----------

async function campaignsView(_arg, gen) {
  const rows = el('tbody');
  const error = el('p', { class: 'error', testid: 'campaign-error', hidden: true });
  const release = el('select', { testid: 'campaign-release', required: true });
  const targetKind = el('select', { testid: 'campaign-target-kind', onchange: () => toggle() },
    el('option', { value: 'pattern' }, 'endpoint name pattern'),
    el('option', { value: 'endpoints' }, 'endpoint list'),
    el('option', { value: 'filter' }, 'model / firmware version'));
  const pattern = el('input', { type: 'text', placeholder: 'sensor-*', testid: 'campaign-pattern' });
  const endpoints = el('textarea', { placeholder: 'dev-1 dev-2 … (spaces, commas or lines)', testid: 'campaign-endpoints' });
  const model = el('input', { type: 'text', placeholder: 'board-a*', testid: 'campaign-model' });
  const fwVersion = el('input', { type: 'text', placeholder: '1.*', testid: 'campaign-fw-version' });
  const num = (testid, v, step) => el('input', { type: 'number', value: v, step: step || '1', min: '0', testid });
  const name = el('input', { type: 'text', placeholder: 'optional', testid: 'campaign-name' });
  const waves = el('input', { type: 'text', value: '1,10,50,100', testid: 'campaign-waves' });
  const threshold = num('campaign-threshold', '0.1', '0.01');
  const soak = num('campaign-soak', '600', 'any');
  const maxConcurrent = num('campaign-max-concurrent', '100');
  const maxPerMesh = num('campaign-max-per-mesh', '4');
  const paused = el('input', { type: 'checkbox', testid: 'campaign-paused' });
  const patternLabel = el('label', {}, 'Pattern (glob, * and ?)', pattern);
  const endpointsLabel = el('label', {}, 'Endpoints', endpoints);
  const filterLabels = el('div', { class: 'fields' }, el('label', {}, 'Model (/3/0/1 glob)', model), el('label', {}, 'Firmware version (glob)', fwVersion));
  function toggle() {
    patternLabel.hidden = targetKind.value !== 'pattern';
    endpointsLabel.hidden = targetKind.value !== 'endpoints';
    filterLabels.hidden = targetKind.value !== 'filter';
  }
  toggle();
  const form = el('form', { class: 'stack', testid: 'campaign-form', onsubmit: (e) => { e.preventDefault(); create(); } },
    el('div', { class: 'fields' }, el('label', {}, 'Release', release), el('label', {}, 'Name', name)),
    el('label', {}, 'Target', targetKind), patternLabel, endpointsLabel, filterLabels,
    el('div', { class: 'fields' },
      el('label', {}, 'Waves (cumulative %)', waves),
      el('label', {}, 'Failure threshold', threshold),
      el('label', {}, 'Soak between waves (s)', soak)),
    el('div', { class: 'fields' },
      el('label', {}, 'Max downloads at once', maxConcurrent),
      el('label', {}, 'Max per mesh', maxPerMesh),
      el('label', {}, el('span', {}, 'Create paused'), paused)),
    el('button', { type: 'submit', class: 'primary', testid: 'campaign-submit' }, 'Create campaign'), error);
  $('view').append(
    el('h1', {}, 'Campaigns'),
    el('div', { class: 'card' },
      el('table', { testid: 'campaigns-table' },
        el('thead', {}, el('tr', {}, ...['id', 'name', 'release', 'target', 'state', 'progress', 'succeeded', 'failed', 'created'].map((h) => el('th', {}, h)))),
        rows)),
    el('div', { class: 'card' }, el('h2', {}, 'New campaign'), form));

  async function create() {
    error.hidden = true;
    const target = {};
    if (targetKind.value === 'pattern') target.pattern = pattern.value.trim();
    else if (targetKind.value === 'endpoints') target.endpoints = endpoints.value.split(/[\s,]+/).filter(Boolean);
    else {
      if (model.value.trim()) target.model = model.value.trim();
      if (fwVersion.value.trim()) target.firmware_version = fwVersion.value.trim();
    }
    const body = {
      release: release.value,
      target,
      waves: waves.value.split(/[\s,]+/).filter(Boolean).map(Number),
      failure_threshold: Number(threshold.value),
      soak_s: Number(soak.value),
      max_concurrent: Number(maxConcurrent.value),
      max_per_mesh: Number(maxPerMesh.value),
      start: !paused.checked,
    };
    if (name.value.trim()) body.name = name.value.trim();
    try {
      const r = await api('POST', '/campaigns', body);
      location.hash = `#/campaign/${r.id}`;
    } catch (e) {
      if (!current(gen)) return;
      error.textContent = `Not created: ${e.message}`;
      error.hidden = false;
    }
  }

  async function load() {
    const [list, releases] = await Promise.all([api('GET', '/campaigns'), api('GET', '/releases')]);
    if (!current(gen)) return;
    if (!release.options.length) {
      release.replaceChildren(...releases.map((r) => el('option', { value: r.id }, `${r.version || '?'} — ${r.id}`)));
      if (!releases.length) release.replaceChildren(el('option', { value: '' }, 'no releases: add one first'));
    }
    list.sort((a, b) => b.id - a.id);
    rows.replaceChildren(...list.map((c) => {
      const all = Object.values(c.totals).reduce((a, n) => a + n, 0);
      return el('tr', { testid: 'campaign-row', 'data-id': c.id },
        el('td', {}, el('a', { href: `#/campaign/${c.id}`, testid: `campaign-link-${c.id}` }, `#${c.id}`)),
        el('td', {}, c.name || ''),
        el('td', { class: 'mono' }, c.release_version || c.release_id),
        el('td', { class: 'mono' }, describeTarget(c.target)),
        el('td', {}, badge(c.state)),
        el('td', {}, bar(c.totals, all)),
        el('td', { class: 'num' }, c.totals.succeeded),
        el('td', { class: 'num' }, c.totals.failed),
        el('td', {}, fmtTime(c.created_at_ms)));
    }));
    if (!list.length) rows.replaceChildren(el('tr', {}, el('td', { colspan: 9, class: 'muted' }, 'no campaigns yet')));
  }
  const reload = debounce(() => load().catch((e) => flash(e.message)), 500);
  onEvent((ev) => {
    if (ev.type === 'stream-open' || ev.type === 'campaign-state' || ev.type === 'campaign-wave' || (ev.type === 'campaign-device' && ev.status !== 'running')) reload();
  });
  await load();
}

function describeTarget(t) {
  if (!t) return '';
  if (t.endpoints) return t.endpoints.length <= 3 ? t.endpoints.join(', ') : `${t.endpoints.length} endpoints`;
  return [t.pattern && `name ${t.pattern}`, t.model && `model ${t.model}`, t.firmware_version && `version ${t.firmware_version}`].filter(Boolean).join(', ');
}

async function campaignView(idText, gen) {
  const id = Number(idText);
  const state = el('span', { testid: 'campaign-state' });
  const reason = el('span', { class: 'error', testid: 'campaign-reason' });
  const soakNote = el('span', { class: 'muted', testid: 'campaign-soak-note' });
  const info = el('dl', { class: 'kv', testid: 'campaign-info' });
  const totals = el('div', { class: 'grid', testid: 'campaign-totals' });
  const waveRows = el('tbody');
  const chart = el('div', { testid: 'wave-chart-box' });
  const devRows = el('tbody');
  const devNote = el('p', { class: 'muted' });
  const control = (action, label, cls) => el('button', { class: cls, testid: `campaign-${action}`, onclick: () => command(action) }, label);
  const pause = control('pause', 'Pause');
  const resume = control('resume', 'Resume');
  const abort = control('abort', 'Abort', 'danger');
  const cmdError = el('span', { class: 'error', testid: 'campaign-command-error' });
  $('view').append(
    el('p', {}, el('a', { href: '#/campaigns' }, '← Campaigns')),
    el('h1', {}, `Campaign #${id} `, state),
    el('div', { class: 'toolbar' }, pause, resume, abort, soakNote, reason, cmdError),
    el('div', { class: 'row' },
      el('div', { class: 'card' }, el('h2', {}, 'Settings'), info),
      el('div', { class: 'card' }, el('h2', {}, 'Outcome per wave'), chart)),
    totals,
    el('div', { class: 'card' },
      el('h2', {}, 'Waves'),
      el('table', { testid: 'waves-table' },
        el('thead', {}, el('tr', {},
          el('th', {}, 'wave'), el('th', { class: 'num' }, 'up to'), el('th', { class: 'num' }, 'devices'),
          ...OUTCOMES.map((k) => el('th', { class: 'num' }, k)), el('th', {}, 'progress'), el('th', {}, 'started'), el('th', {}, 'finished'))),
        waveRows)),
    el('div', { class: 'card' },
      el('h2', {}, 'Devices'), devNote,
      el('table', { testid: 'campaign-devices' },
        el('thead', {}, el('tr', {}, ...['endpoint', 'wave', 'mesh', 'status', 'job', 'started', 'finished', 'error'].map((h) => el('th', {}, h)))),
        devRows)));

  let c = null;
  async function command(action) {
    cmdError.textContent = '';
    if (action === 'abort' && !confirm(`Abort campaign #${id}? Running jobs are cancelled and queued devices skipped.`)) return;
    try {
      await api('POST', `/campaigns/${id}/${action}`);
    } catch (e) {
      if (current(gen)) cmdError.textContent = `${action}: ${e.message}`;
    }
    await load();
  }

  function setState(s, why) {
    state.replaceChildren(badge(s));
    state.setAttribute('data-state', s);
    reason.textContent = why ? `reason: ${why}` : '';
    pause.disabled = !(s === 'running' || s === 'soaking');
    resume.disabled = !(s === 'paused' || s === 'created');
    abort.disabled = FINAL.has(s);
  }

  function showSoak() {
    if (c && c.state === 'soaking' && c.soak_until_ms) {
      soakNote.textContent = `soaking: next wave in ${duration(Math.max(0, c.soak_until_ms - Date.now()))}`;
    } else soakNote.textContent = '';
  }

  async function load() {
    const v = await api('GET', `/campaigns/${id}?limit=500`);
    if (!current(gen)) return;
    c = v;
    setState(v.state, v.reason);
    showSoak();
    info.replaceChildren(...[
      ['name', v.name || '—'], ['release', `${v.release_version || '?'} (${v.release_id})`], ['target', describeTarget(v.target)],
      ['waves', v.wave_percents.map((p) => `${p} %`).join(', ')], ['failure threshold', String(v.failure_threshold)],
      ['soak', duration(v.soak_ms)], ['max downloads', `${v.max_concurrent} overall, ${v.max_per_mesh} per mesh`],
      ['created', fmtTime(v.created_at_ms)], ['finished', fmtTime(v.finished_at_ms)],
    ].flatMap(([k, x]) => [el('dt', {}, k), el('dd', {}, x)]));
    const all = Object.values(v.totals).reduce((a, n) => a + n, 0);
    totals.replaceChildren(stat(all, 'devices', 'total-devices'),
      ...OUTCOMES.map((k) => stat(v.totals[k], k, `total-${k}`)));
    waveRows.replaceChildren(...v.waves.map((w) => {
      const size = Object.values(w.counts).reduce((a, n) => a + n, 0);
      return el('tr', { testid: `wave-row-${w.wave}`, class: w.wave === v.current_wave && !FINAL.has(v.state) ? 'current' : '' },
        el('td', {}, `${w.wave + 1}${w.wave === v.current_wave && !FINAL.has(v.state) ? ' ◀' : ''}`),
        el('td', { class: 'num' }, `${w.percent} %`),
        el('td', { class: 'num', testid: `wave-${w.wave}-size` }, w.size),
        ...OUTCOMES.map((k) => el('td', { class: 'num', testid: `wave-${w.wave}-${k}` }, w.counts[k])),
        el('td', {}, bar(w.counts, size)),
        el('td', {}, fmtTime(w.started_at_ms)),
        el('td', {}, fmtTime(w.finished_at_ms)));
    }));
    chart.replaceChildren(waveChart(v.waves), legend());
    const devs = v.devices || [];
    devRows.replaceChildren(...devs.map((d) => el('tr', { testid: 'campaign-device-row' },
      el('td', {}, el('a', { href: `#/device/${encodeURIComponent(d.endpoint)}` }, d.endpoint)),
      el('td', { class: 'num' }, d.wave + 1),
      el('td', { class: 'mono' }, d.mesh || ''),
      el('td', {}, badge(d.status)),
      el('td', {}, d.job_id === null ? '' : `#${d.job_id}`),
      el('td', {}, fmtTime(d.started_at_ms)),
      el('td', {}, fmtTime(d.finished_at_ms)),
      el('td', { class: 'error' }, d.error || ''))));
    devNote.textContent = all > devs.length ? `the first ${devs.length} of ${all}` : '';
  }

  // Live: every campaign event of this campaign reloads the view (at most a few times a second),
  // so the counts on the page are always the server's own, never a sum kept by the page.
  const reload = debounce(() => load().catch((e) => flash(e.message)), 300);
  onEvent((ev) => {
    if (ev.type === 'stream-open') reload();
    if (ev.campaign_id !== id) return;
    if (ev.type === 'campaign-state') {
      setState(ev.state, ev.reason);
      if (c) {
        c.state = ev.state;
        c.soak_until_ms = ev.soak_until_ms;
        showSoak();
      }
    }
    reload();
  });
  every(1000, showSoak);
  // A safety net for a dropped stream: a slow poll while the campaign is not final.
  every(10000, () => {
    if (c && !FINAL.has(c.state)) reload();
  });
  await load();
}

const CHART_COLORS = {
  succeeded: '#1a7f37', failed: '#cf222e', unreachable: '#bc4c00', cancelled: '#57606a', skipped: '#8c959f',
  running: '#54aeff', queued: '#d8dee4',
};

// Stacked bars, one per wave, scaled to the largest wave: what ended how, and what is still to come.
function waveChart(waves) {
  const h = 190;
  const top = 12;
  const bottom = 34;
  const left = 40;
  const slot = 76;
  const barW = 40;
  const w = Math.max(320, left + waves.length * slot + 10);
  const max = Math.max(1, ...waves.map((wv) => Object.values(wv.counts).reduce((a, n) => a + n, 0)));
  const plot = h - top - bottom;
  const s = svg('svg', { class: 'chart', width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': 'outcome per wave', 'data-testid': 'wave-chart' });
  s.append(svg('line', { class: 'axis', x1: left - 4, x2: w - 4, y1: top + plot, y2: top + plot }),
    svg('text', { x: left - 8, y: top + plot + 4, 'text-anchor': 'end' }, '0'),
    svg('text', { x: left - 8, y: top + 4, 'text-anchor': 'end' }, String(max)),
    svg('text', { x: left - 4, y: top - 2, 'text-anchor': 'start' }, 'devices'),
    svg('line', { class: 'axis', x1: left - 4, x2: w - 4, y1: top, y2: top, 'stroke-dasharray': '3 3' }));
  waves.forEach((wv, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let y = top + plot;
    for (const k of OUTCOMES) {
      const n = wv.counts[k] || 0;
      const bh = (plot * n) / max;
      s.append(svg('rect', { x, y: y - bh, width: barW, height: bh, fill: CHART_COLORS[k], 'data-testid': `chart-w${wv.wave}-${k}`, 'data-count': n },
        svg('title', {}, `wave ${wv.wave + 1}: ${n} ${k}`)));
      y -= bh;
    }
    s.append(svg('text', { x: x + barW / 2, y: top + plot + 14, 'text-anchor': 'middle' }, `wave ${wv.wave + 1}`),
      svg('text', { x: x + barW / 2, y: top + plot + 27, 'text-anchor': 'middle' }, `≤${wv.percent} %`));
  });
  return s;
}

function legend() {
  return el('div', { class: 'legend' }, ...OUTCOMES.map((k) => {
    const i = el('i', { class: `c-${k}` });
    return el('span', {}, i, k);
  }));
}

// ---------- start ----------

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = e.target.querySelector('button');
    button.disabled = true;
    await signIn($('token').value.trim());
    button.disabled = false;
  });
  $('logout').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', render);
  if (token) {
    // A token from earlier in this tab: check it again before showing anything.
    signIn(token).then((ok) => {
      if (!ok) signOut('The saved token was refused: sign in again.');
    });
  } else {
    $('login').hidden = false;
    $('token').focus();
  }
});
