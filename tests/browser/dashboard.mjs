// The dashboard in a real browser: a real lwm2m-server and real lwm2m-client device processes on
// loopback, Debian's Chromium driven headless by playwright-core. Signs in (a wrong token first),
// looks at the fleet (model and firmware version read at registration) and one device: its objects
// by name from the object models, a typed write refused then accepted. Uploads a signed release
// through the page, creates a campaign from the page, waits until the page shows it completed, and
// checks what the page shows against GET /api/campaigns/{id}. Screenshots go to
// target/dashboard.png (the campaign), target/dashboard-fleet.png and target/dashboard-device.png.
//
// A slow device behind `sim-network proxy` (two radio hops of 10 ms each) downloads a release
// whose image URI names the proxy: its page must show the download bar move (two readings, the
// second larger) with bytes served, rate and time left, then the audit trail in words.
// Screenshots target/dashboard-download.png and target/dashboard-audit.png.
//
// Then 200 devices at once: one `lwm2m-client swarm` process runs 210 devices (sw-000 .. sw-209,
// each its own UDP socket and flash file; sw-200 .. sw-209 are built for another class, so a
// release for sensor-rev-b fails on them with Update Result 6). A campaign over 200 of them
// (waves 1,10,50,100) whose second wave holds the ten of the other class must be shown halted at
// wave 2 live, with the reason, and no device of a later wave started; `lwm2m-server campaign show
// ID --watch --json` must exit when it is final and say what GET /api/campaigns/{id} says. A
// campaign of a newer release over the 200 of the right class must be shown completed with 200
// succeeded. Screenshots target/dashboard-halted.png and target/dashboard-200.png.
//
// Uses the debug binaries that `cargo test --workspace --all-features` built (lwm2m-server,
// lwm2m-client, suit) in $CARGO_TARGET_DIR or target/. Run: node tests/browser/dashboard.mjs
// (after `npm ci --prefix tests/browser`, which scripts/setup.sh does).

import { execFile, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const BIN = process.env.OTAFLEET_BIN_DIR || path.join(TARGET, 'debug');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WORK = path.join(TARGET, 'browser-test');
const SCREENSHOT = path.join(TARGET, 'dashboard.png');
const SCREENSHOT_FLEET = path.join(TARGET, 'dashboard-fleet.png');
const SCREENSHOT_DEVICE = path.join(TARGET, 'dashboard-device.png');
const SCREENSHOT_HALTED = path.join(TARGET, 'dashboard-halted.png');
const SCREENSHOT_200 = path.join(TARGET, 'dashboard-200.png');
const SCREENSHOT_OBJECTS = path.join(TARGET, 'dashboard-objects.png');
const SCREENSHOT_DOWNLOAD = path.join(TARGET, 'dashboard-download.png');
const SCREENSHOT_AUDIT = path.join(TARGET, 'dashboard-audit.png');
const DEVICES = 6;
// The slow device (behind the proxy) is registered too from its step on.
const SLOW = 'slow-dev';
const SLOW_IMAGE = 12 * 1024;
// The swarm: 210 devices; the 200 of the right class are sw-000 .. sw-199, the ten others sw-200 ..
// sw-209.
const SWARM = 210;
const SWARM_GOOD = 200;
const swarmName = (i) => `sw-${String(i).padStart(3, '0')}`;
const range = (a, b) => Array.from({ length: b - a }, (_, k) => a + k);
const TOKEN = `browser-test-${process.pid}-${Date.now()}`;
const OUTCOMES = ['succeeded', 'failed', 'unreachable', 'cancelled', 'skipped', 'running', 'queued'];
const TOTAL_LIMIT_S = 300;

const started = Date.now();
const children = [];
let serverLog = '';

function log(msg) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fail(msg) {
  throw new Error(msg);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const r = await fn();
    log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return r;
  } catch (e) {
    e.message = `${name}: ${e.message}`;
    throw e;
  }
}

// Polls `fn` until it returns `true` (a string means "not yet: this is what I see"); a timeout
// names what was awaited and what was last seen.
async function waitFor(what, seconds, fn) {
  const until = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last === true) return true;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > until) fail(`timed out after ${seconds} s waiting for ${what}${last !== undefined ? ` (last seen: ${JSON.stringify(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function run(bin, args) {
  try {
    return execFileSync(path.join(BIN, bin), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
  } catch (e) {
    fail(`${bin} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

// Runs a binary to its end without blocking the test (for `campaign show --watch`).
function runAsync(bin, args, env, seconds) {
  return new Promise((resolve, reject) => {
    execFile(path.join(BIN, bin), args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: seconds * 1000, maxBuffer: 64 << 20 },
      (e, stdout, stderr) => {
        if (e) reject(new Error(`${bin} ${args.join(' ')} failed${e.killed ? ` (still running after ${seconds} s)` : ''}: ${stderr || e.message}`));
        else resolve(stdout);
      });
  });
}

function start(bin, args, logName) {
  const out = fs.openSync(path.join(WORK, logName), 'w');
  const child = spawn(path.join(BIN, bin), args, { stdio: ['ignore', out, out] });
  child.logName = logName;
  children.push(child);
  return child;
}

function stopAll() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

async function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function freeUdpPort() {
  const s = dgram.createSocket('udp4');
  await new Promise((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  s.close();
  return port;
}

let base = '';
async function api(p, method = 'GET') {
  const r = await fetch(`${base}/api${p}`, { method, headers: { Authorization: `Bearer ${TOKEN}` } });
  const text = await r.text();
  if (!r.ok) fail(`${method} /api${p}: HTTP ${r.status} ${text}`);
  return JSON.parse(text);
}

// Waits (10 s at most) until every count the campaign page shows (per wave, in the chart, the
// totals) equals the counts of `v`, what GET /api/campaigns/{id} answered.
async function pageShows(page, v) {
  const text = async (id) => (await page.getByTestId(id).textContent()).trim();
  await waitFor('the page counts to equal the server counts', 10, async () => {
    const diffs = [];
    for (const w of v.waves) {
      for (const k of OUTCOMES) {
        const shown = await text(`wave-${w.wave}-${k}`);
        if (shown !== String(w.counts[k])) diffs.push(`wave ${w.wave} ${k}: page ${shown}, API ${w.counts[k]}`);
        const bar = await page.getByTestId(`chart-w${w.wave}-${k}`).getAttribute('data-count');
        if (bar !== String(w.counts[k])) diffs.push(`chart wave ${w.wave} ${k}: ${bar}, API ${w.counts[k]}`);
      }
      const size = await text(`wave-${w.wave}-size`);
      if (size !== String(w.size)) diffs.push(`wave ${w.wave} size: page ${size}, API ${w.size}`);
    }
    for (const k of OUTCOMES) {
      const shown = await text(`total-${k}`);
      if (shown !== String(v.totals[k])) diffs.push(`total ${k}: page ${shown}, API ${v.totals[k]}`);
    }
    return diffs.length === 0 || diffs.join('; ');
  });
}

// A campaign of 200 devices makes a page 11 000 px tall: the screenshot is its top (state, reason,
// totals, waves, chart, the first devices); the whole page goes to target/browser-test/.
async function shoot(page, file) {
  await page.screenshot({ path: file, fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1700 } });
  await page.screenshot({ path: path.join(WORK, `${path.basename(file, '.png')}-full.png`), fullPage: true });
}

// Fills the campaign form (the page is on #/campaigns) and submits it; returns the new id.
async function createCampaign(page, { release, name, endpoints, waves, threshold, soak, maxConcurrent, maxPerMesh }) {
  const byId = (id) => page.getByTestId(id);
  await waitFor('the release in the form', 10, async () => (await byId('campaign-release').locator(`option[value="${release}"]`).count()) === 1);
  await byId('campaign-release').selectOption(release);
  await byId('campaign-name').fill(name);
  await byId('campaign-target-kind').selectOption('endpoints');
  await byId('campaign-endpoints').fill(endpoints.join('\n'));
  await byId('campaign-waves').fill(waves);
  await byId('campaign-threshold').fill(String(threshold));
  await byId('campaign-soak').fill(String(soak));
  await byId('campaign-max-concurrent').fill(String(maxConcurrent));
  await byId('campaign-max-per-mesh').fill(String(maxPerMesh));
  if (await byId('campaign-paused').isChecked()) await byId('campaign-paused').uncheck();
  const before = page.url();
  await byId('campaign-submit').click();
  await waitFor('the page of the new campaign', 15, async () => {
    const err = page.getByTestId('campaign-error');
    if (await err.isVisible()) fail(await err.textContent());
    return (page.url() !== before && /#\/campaign\/\d+$/.test(page.url())) || page.url();
  });
  return Number(page.url().match(/#\/campaign\/(\d+)$/)[1]);
}

// Polls the campaign page until it shows `want` (no reload: the event stream drives it); fails at
// once on any other final state. Returns the states it showed on the way.
async function pageReaches(page, id, want, seconds) {
  const seen = [];
  await waitFor(`the page to show campaign #${id} ${want}`, seconds, async () => {
    const s = await page.getByTestId('campaign-state').getAttribute('data-state');
    if (seen[seen.length - 1] !== s) seen.push(s);
    if (s === want) return true;
    if (['halted', 'aborted', 'completed'].includes(s)) fail(`the campaign ended ${s}: ${(await page.getByTestId('campaign-reason').textContent()).trim()}`);
    const v = await api(`/campaigns/${id}?limit=0`);
    return `page: ${s}, server: ${v.state} ${JSON.stringify(v.totals)}`;
  });
  return seen;
}

async function main() {
  await step('binaries and Chromium are there', () => {
    for (const b of ['lwm2m-server', 'lwm2m-client', 'suit', 'sim-network']) {
      if (!fs.existsSync(path.join(BIN, b))) fail(`${path.join(BIN, b)} is not built: run \`cargo test --workspace --all-features\` (or \`cargo build -p lwm2m-server -p lwm2m-client -p suit-manifest -p sim-network --all-features\`) first`);
    }
    if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)`);
  });
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(WORK, { recursive: true });
  const key = path.join(WORK, 'key.pem');
  const pub = path.join(WORK, 'key.pub.pem');
  const [coapPort, httpPort, proxyPort] = [await freeUdpPort(), await freeTcpPort(), await freeUdpPort()];
  base = `http://127.0.0.1:${httpPort}`;

  const server = await step('lwm2m-server serves', async () => {
    run('suit', ['keygen', '-o', key]);
    const s = start('lwm2m-server', ['serve', '--coap', `127.0.0.1:${coapPort}`, '--http', `127.0.0.1:${httpPort}`,
      '--data', path.join(WORK, 'server-data'), '--trust-key', pub, '--admin-token', TOKEN, '--poll-interval', '2'], 'server.log');
    serverLog = path.join(WORK, 'server.log');
    await waitFor('the admin API to answer', 20, async () => {
      if (s.exitCode !== null) fail(`lwm2m-server exited with ${s.exitCode}`);
      return (await fetch(`${base}/api/clients`, { headers: { Authorization: `Bearer ${TOKEN}` } })).ok === true;
    });
    return s;
  });

  const { envelope, image } = await step('a signed release 2.0.0 is made (not added yet)', () => {
    const img = path.join(WORK, 'image-2.0.0.bin');
    const env = path.join(WORK, 'release-2.0.0.suit');
    run('lwm2m-client', ['make-image', '--version', '2.0.0', '--size', '8192', '-o', img]);
    run('suit', ['create', '--image', img, '--vendor-id', 'acme.example', '--class-id', 'sensor-rev-b', '--sequence', '2',
      '--uri', 'image', '--version', '2.0.0', '--key', key, '-o', env]);
    return { envelope: env, image: img };
  });

  await step(`${DEVICES} lwm2m-client devices register`, async () => {
    for (let i = 1; i <= DEVICES; i++) {
      start('lwm2m-client', ['--server', `coap://127.0.0.1:${coapPort}`, '--endpoint', `dash-dev-${i}`,
        '--flash', path.join(WORK, `dev-${i}.img`), '--trust', pub, '--vendor-id', 'acme.example', '--class-id', 'sensor-rev-b'], `dev-${i}.log`);
    }
    await waitFor(`${DEVICES} registrations`, 30, async () => {
      if (server.exitCode !== null) fail(`lwm2m-server exited with ${server.exitCode}`);
      const dead = children.find((c) => c.exitCode !== null && c.logName.startsWith('dev-'));
      if (dead) fail(`${dead.logName.replace('.log', '')} exited with ${dead.exitCode}`);
      const clients = await api('/clients');
      return clients.length === DEVICES || `${clients.length} registered`;
    });
  });

  const browser = await step('headless Chromium starts', () =>
    chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] }));
  const pageErrors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(15000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
    const byId = (id) => page.getByTestId(id);
    const text = async (id) => (await byId(id).textContent()).trim();

    await step('a wrong token is refused with a clear message', async () => {
      await page.goto(base);
      await byId('token-input').fill('not-the-token');
      await byId('login-button').click();
      await byId('login-error').waitFor({ state: 'visible' });
      const msg = await text('login-error');
      if (!/refused this admin token/.test(msg)) fail(`the message says ${JSON.stringify(msg)}`);
      if (await page.locator('#app').isVisible()) fail('the app is shown after a wrong token');
      await page.screenshot({ path: path.join(WORK, 'login-refused.png') });
      // Chromium logs the refused sign-in call (401) as a console error: expected, not a page error.
      pageErrors.length = 0;
    });

    await step('signed in, the fleet view shows every device', async () => {
      await byId('token-input').fill(TOKEN);
      await byId('login-button').click();
      await waitFor(`fleet-registered = ${DEVICES}`, 15, async () => (await text('fleet-registered')) === String(DEVICES));
      const rows = await byId('device-row').count();
      if (rows !== DEVICES) fail(`${rows} device rows, want ${DEVICES}`);
      await waitFor('the event stream to be live', 10, async () => (await text('events-status')) === 'events: live');
      const stored = await page.evaluate(() => sessionStorage.getItem('otafleet-admin-token'));
      if (stored !== TOKEN) fail('the token is not kept in sessionStorage');
      // Model and firmware version come from the server's read at registration, no click needed.
      await waitFor('the model and firmware columns filled', 15, async () =>
        ((await text('device-model-dash-dev-1')) === 'simulated-device' && (await text('device-version-dash-dev-1')) === '1.0.0')
        || `${await text('device-model-dash-dev-1')} / ${await text('device-version-dash-dev-1')}`);
      const fleet = await api('/fleet');
      if (fleet.devices.some((d) => d.model !== 'simulated-device' || d.firmware_version !== '1.0.0')) fail(`the API says ${JSON.stringify(fleet.devices)}`);
    });

    await step('a device: its objects by name, Object 5 in words and a read', async () => {
      await byId('device-link-dash-dev-1').click();
      await waitFor('the object tree', 10, async () => (await byId('device-objects').locator('details').count()) === 3);
      const names = [await text('object-name-1'), await text('object-name-3'), await text('object-name-5')];
      if (names.join() !== 'LwM2M Server,Device,Firmware Update') fail(`the objects are named ${JSON.stringify(names)}`);
      await waitFor('State Idle', 30, async () => /^0 — Idle$/.test(await text('fw-state')) || text('fw-state'));
      await byId('dm-path').fill('/3/0/3');
      await byId('dm-read').click();
      await waitFor('Firmware Version = 1.0.0 in the result', 30, async () => /\/3\/0\/3 Firmware Version = 1\.0\.0/.test(await text('dm-result')) || text('dm-result'));
      // Open Device: its resources by name with their values, types and operations.
      await byId('object-3').locator('summary').click();
      await byId('inst-/3/0').click();
      await waitFor('the resources of /3/0', 30, async () => (await text('res-value-/3/0/3')) === '1.0.0' || text('inst-msg-/3/0'));
      const rows = { '/3/0/1': ['Model Number', 'simulated-device'], '/3/0/3': ['Firmware Version', '1.0.0'], '/3/0/0': ['Manufacturer', 'otafleet'] };
      for (const [p, [name, value]] of Object.entries(rows)) {
        if ((await text(`res-name-${p}`)) !== name || (await text(`res-value-${p}`)) !== value) fail(`${p} shows ${await text(`res-name-${p}`)} = ${await text(`res-value-${p}`)}`);
      }
      // Read-only resources offer Read and Observe, no Write.
      if ((await byId('res-write-/3/0/3').count()) !== 0 || (await byId('res-observe-/3/0/3').count()) !== 1) fail('/3/0/3 offers the wrong actions');
      const api3 = await api('/clients/dash-dev-1/read/3/0/3');
      if (api3.values[0].name !== 'Firmware Version' || api3.values[0].value !== '1.0.0') fail(`the API says ${JSON.stringify(api3)}`);
    });

    await step('a typed write: refused with the reason, then written as an Unsigned Integer', async () => {
      await byId('object-1').locator('summary').click();
      await byId('inst-/1/0').click();
      await waitFor('Lifetime 300 s', 30, async () => (await text('res-value-/1/0/1')) === '300 s' || text('res-value-/1/0/1'));
      if ((await text('res-name-/1/0/1')) !== 'Lifetime') fail(`/1/0/1 is named ${await text('res-name-/1/0/1')}`);
      await byId('res-input-/1/0/1').fill('soon');
      await byId('res-write-/1/0/1').click();
      await waitFor('the refusal', 10, async () => /Lifetime, Unsigned Integer\): "soon" is not an integer/.test(await text('res-msg-/1/0/1')) || text('res-msg-/1/0/1'));
      // Chromium logs the refused call (400) as a console error: expected here.
      pageErrors.length = 0;
      await byId('res-input-/1/0/1').fill('600');
      await byId('res-write-/1/0/1').click();
      await waitFor('600 s read back', 15, async () => (await text('res-value-/1/0/1')) === '600 s' || `${await text('res-value-/1/0/1')} ${await text('res-msg-/1/0/1')}`);
      const back = await api('/clients/dash-dev-1/read/1/0/1');
      if (back.values[0].value !== 600) fail(`the device says ${JSON.stringify(back)}`);
      await page.screenshot({ path: SCREENSHOT_OBJECTS, fullPage: true });
      log(`     screenshot ${path.relative(ROOT, SCREENSHOT_OBJECTS)}`);
    });

    const releaseId = await step('the release is uploaded through the page', async () => {
      await byId('nav-releases').click();
      await byId('release-envelope').setInputFiles(envelope);
      await byId('release-image').setInputFiles(image);
      await byId('release-submit').click();
      await waitFor('"Added release"', 20, async () => /^Added release [0-9a-f]{16}/.test(await text('release-result')) || text('release-result'));
      const releases = await api('/releases');
      if (releases.length !== 1 || releases[0].version !== '2.0.0') fail(`the server has ${JSON.stringify(releases)}`);
      await waitFor('the release row', 10, async () => (await byId('release-row').count()) === 1);
      await page.screenshot({ path: path.join(WORK, 'releases.png'), fullPage: true });
      return releases[0].id;
    });

    const id = await step('a campaign is created from the page', async () => {
      await byId('nav-campaigns').click();
      await waitFor('the release in the form', 10, async () => (await byId('campaign-release').locator(`option[value="${releaseId}"]`).count()) === 1);
      await byId('campaign-release').selectOption(releaseId);
      await byId('campaign-name').fill('browser test');
      await byId('campaign-target-kind').selectOption('pattern');
      await byId('campaign-pattern').fill('dash-dev-*');
      await byId('campaign-waves').fill('50,100');
      await byId('campaign-threshold').fill('0.5');
      // A soak long enough to be seen: the page must show it without a reload (event-driven).
      await byId('campaign-soak').fill('2');
      await byId('campaign-max-per-mesh').fill('3');
      await page.screenshot({ path: path.join(WORK, 'campaign-form.png'), fullPage: true });
      await byId('campaign-submit').click();
      await page.waitForURL(/#\/campaign\/\d+$/);
      return Number(page.url().match(/#\/campaign\/(\d+)$/)[1]);
    });

    await step(`campaign #${id} is shown completed (live, from the event stream)`, async () => {
      const seen = new Set();
      await waitFor('the page to show state completed', 180, async () => {
        const s = await byId('campaign-state').getAttribute('data-state');
        seen.add(s);
        if (s === 'halted' || s === 'aborted') fail(`the campaign ended ${s}: ${await text('campaign-reason')}`);
        if (s === 'completed') return true;
        const v = await api(`/campaigns/${id}`);
        return `page: ${s}, server: ${v.state} ${JSON.stringify(v.totals)}`;
      });
      log(`     states shown on the page: ${[...seen].join(' → ')}`);
      if (!seen.has('soaking')) fail(`the page never showed the 2 s soak between the waves (it showed ${[...seen].join(', ')})`);
    });

    await step('what the page shows matches GET /api/campaigns/{id}', async () => {
      const v = await api(`/campaigns/${id}`);
      if (v.state !== 'completed') fail(`the server says ${v.state}`);
      if (v.totals.succeeded !== DEVICES) fail(`the server counts ${v.totals.succeeded} succeeded of ${DEVICES}: ${JSON.stringify(v.totals)}`);
      if (v.waves.length !== 2) fail(`${v.waves.length} waves, want 2`);
      // The page reloads after the last event; give it a moment to show the final counts.
      await pageShows(page, v);
      const perWave = v.waves.map((w) => `wave ${w.wave + 1}: ${w.counts.succeeded}/${w.size} succeeded`).join(', ');
      log(`     ${perWave}; total succeeded ${await text('total-succeeded')}`);
      const evs = Number(await text('events-count'));
      if (!(evs > 0)) fail('the page received no server-sent event');
      if ((await byId('campaign-device-row').count()) !== DEVICES) fail('the device table does not list every device');
      if (!(await byId('campaign-pause').isDisabled()) || !(await byId('campaign-abort').isDisabled())) fail('pause/abort are enabled on a completed campaign');
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      log(`     screenshot ${path.relative(ROOT, SCREENSHOT)}`);
    });

    await step('the fleet view counts the new version', async () => {
      await byId('nav-fleet').click();
      await waitFor(`${DEVICES} devices on 2.0.0`, 15, async () => (await byId('fleet-version-count-2.0.0').count()) === 1 && (await text('fleet-version-count-2.0.0')) === String(DEVICES));
      await page.screenshot({ path: SCREENSHOT_FLEET, fullPage: true });
    });

    await step('the device shows the update in its history and Object 5', async () => {
      await page.goto(`${base}/#/device/dash-dev-1`);
      await waitFor('a succeeded job in the history', 15, async () => /succeeded/.test(await byId('device-history').textContent()) || 'no succeeded row yet');
      await waitFor('Update Result 1 in words', 30, async () => /^1 — Firmware updated successfully$/.test(await text('fw-result')) || text('fw-result'));
      await page.getByRole('button', { name: 'audit trail' }).first().click();
      await byId('audit-table').waitFor();
      await page.screenshot({ path: SCREENSHOT_DEVICE, fullPage: true });
    });

    // ---- a slow device: the download bar moves, then the audit trail in words ----
    await step(`${SLOW} registers through sim-network proxy (2 hops, 10 ms each)`, async () => {
      start('sim-network', ['proxy', '--listen', `127.0.0.1:${proxyPort}`, '--upstream', `127.0.0.1:${coapPort}`, '--hops', '2', '--delay-ms', '10', '--jitter-ms', '0'], 'proxy.log');
      start('lwm2m-client', ['--server', `coap://127.0.0.1:${proxyPort}`, '--endpoint', SLOW, '--flash', path.join(WORK, 'slow.img'),
        '--trust', pub, '--vendor-id', 'acme.example', '--class-id', 'sensor-rev-b'], 'slow.log');
      await waitFor(`${SLOW} registered`, 20, async () => (await api('/clients')).some((c) => c.endpoint === SLOW) || 'not yet');
    });

    const slowRelease = await step(`a release 2.1.0 whose image URI names the proxy is added with the CLI (${SLOW_IMAGE} bytes)`, () => {
      const img = path.join(WORK, 'image-2.1.0.bin');
      const env = path.join(WORK, 'release-2.1.0.suit');
      run('lwm2m-client', ['make-image', '--version', '2.1.0', '--size', String(SLOW_IMAGE), '-o', img]);
      // The release id is the first 16 hex digits of the image's SHA-256, known before adding it.
      const id = execFileSync('sha256sum', [img], { encoding: 'utf8' }).slice(0, 16);
      run('suit', ['create', '--image', img, '--vendor-id', 'acme.example', '--class-id', 'sensor-rev-b', '--sequence', '3',
        '--uri', `coap://127.0.0.1:${proxyPort}/fw/${id}/image`, '--version', '2.1.0', '--key', key, '-o', env]);
      const added = JSON.parse(run('lwm2m-server', ['--url', base, '--token', TOKEN, '--json', 'firmware', 'add', env, img]));
      if (added.id !== id) fail(`the server gave id ${added.id}, want ${id}`);
      return id;
    });

    await step(`the page of ${SLOW} shows its download bar move, with bytes served, rate and time left`, async () => {
      await page.goto(`${base}/#/device/${SLOW}`);
      await byId('download-card').waitFor();
      const r = await fetch(`${base}/api/jobs`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ release: slowRelease, endpoints: [SLOW] }) });
      if (r.status !== 201) fail(`starting the job: HTTP ${r.status} ${await r.text()}`);
      const shown = async () => Number(await byId('download-bar').getAttribute('data-done'));
      let first = 0;
      await waitFor('the bar to start moving', 20, async () => {
        first = await shown();
        return (first > 0 && first < SLOW_IMAGE) || `${first} bytes shown`;
      });
      await page.screenshot({ path: path.join(WORK, 'download-1.png'), fullPage: true });
      await sleep(1500);
      const second = await shown();
      if (!(second > first)) fail(`the bar did not move: ${first} then ${second} bytes`);
      await waitFor('a rate and a time left', 10, async () => {
        const [rate, eta] = [await text('download-rate'), await text('download-eta')];
        return (/\/s$/.test(rate) && /^(about|under)|^done$/.test(eta)) || `${rate} / ${eta}`;
      });
      const total = Number(await byId('download-bar').getAttribute('data-total'));
      if (total !== SLOW_IMAGE) fail(`the bar's total is ${total}, want ${SLOW_IMAGE}`);
      const fromApi = await api(`/clients/${SLOW}/download`);
      if (fromApi && fromApi.bytes_done < second) fail(`the page shows ${second} bytes, the server only ${fromApi.bytes_done}`);
      log(`     bar: ${first} then ${second} of ${total} bytes; ${await text('download-bytes')}, rate ${await text('download-rate')}, time left ${await text('download-eta')}`);
      await page.screenshot({ path: SCREENSHOT_DOWNLOAD, fullPage: true });
      log(`     screenshot ${path.relative(ROOT, SCREENSHOT_DOWNLOAD)}`);
    });

    await step(`${SLOW}'s update succeeds and its audit trail reads in words`, async () => {
      await waitFor('a succeeded job in the history', 60, async () => /succeeded/.test(await byId('device-history').textContent()) || (await api('/jobs')).map((j) => j.status).join());
      await waitFor('the bar at 100 %', 10, async () => Number(await byId('download-bar').getAttribute('data-done')) === SLOW_IMAGE || byId('download-bar').getAttribute('data-done'));
      const jobs = await api('/jobs');
      const job = jobs.find((j) => j.release_id === slowRelease);
      await byId(`audit-${job.id}`).click();
      await byId('audit-table').waitFor();
      const trail = await byId('audit-table').textContent();
      for (const words of ['Download started', 'Device reported', 'Downloading (State 1), no result yet', 'Downloaded (State 2)',
        'Update executed', 'Idle (State 0), Firmware updated successfully (Result 1)', 'the device runs PkgVersion 2.1.0']) {
        if (!trail.includes(words)) fail(`the audit trail does not say ${JSON.stringify(words)}: ${trail}`);
      }
      if (/Some\(|None/.test(trail)) fail(`Rust Debug text in the audit trail: ${trail}`);
      const audit = await api(`/jobs/${job.id}/audit`);
      const reported = audit.find((a) => a.event === 'object5' && a.state === 1);
      if (!reported || reported.state_name !== 'Downloading' || reported.result !== 0) fail(`the API's audit keeps no numbers and names: ${JSON.stringify(audit)}`);
      await byId('audit-table').scrollIntoViewIfNeeded();
      await page.screenshot({ path: SCREENSHOT_AUDIT, fullPage: true });
      log(`     screenshot ${path.relative(ROOT, SCREENSHOT_AUDIT)}`);
    });

    await step('a campaign created paused can be aborted from its page', async () => {
      await byId('nav-campaigns').click();
      await waitFor('the release in the form', 10, async () => (await byId('campaign-release').locator(`option[value="${releaseId}"]`).count()) === 1);
      await byId('campaign-target-kind').selectOption('endpoints');
      await byId('campaign-endpoints').fill('dash-dev-1, dash-dev-2');
      await byId('campaign-paused').check();
      await byId('campaign-submit').click();
      await page.waitForURL(/#\/campaign\/\d+$/);
      const second = Number(page.url().match(/#\/campaign\/(\d+)$/)[1]);
      await waitFor('state created', 10, async () => (await byId('campaign-state').getAttribute('data-state')) === 'created');
      if (!(await byId('campaign-pause').isDisabled()) || await byId('campaign-resume').isDisabled()) fail('created: want Pause disabled and Resume enabled');
      page.once('dialog', (d) => d.accept());
      await byId('campaign-abort').click();
      await waitFor('state aborted', 10, async () => (await byId('campaign-state').getAttribute('data-state')) === 'aborted');
      const v = await api(`/campaigns/${second}`);
      if (v.state !== 'aborted' || v.totals.skipped !== 2) fail(`the server says ${v.state} ${JSON.stringify(v.totals)}`);
      await waitFor('2 skipped on the page', 10, async () => (await text('total-skipped')) === '2');
      await byId('nav-campaigns').click();
      await waitFor('both campaigns listed', 10, async () => (await byId('campaign-row').count()) === 2);
      await page.screenshot({ path: path.join(WORK, 'campaigns.png'), fullPage: true });
    });

    // ---- 200 devices from one swarm process ----
    const swarm = await step(`one lwm2m-client swarm process: ${SWARM} devices register`, async () => {
      const sw = start('lwm2m-client', ['swarm', '--count', String(SWARM), '--endpoint-prefix', 'sw-', '--dir', path.join(WORK, 'swarm'),
        '--server', `coap://127.0.0.1:${coapPort}`, '--trust', pub, '--vendor-id', 'acme.example', '--class-id', 'sensor-rev-b',
        '--class-id-for', 'sw-20?=sensor-rev-c', '--block-size', '256'], 'swarm.log');
      await waitFor(`${DEVICES + 1 + SWARM} registrations`, 30, async () => {
        if (sw.exitCode !== null) fail(`the swarm exited with ${sw.exitCode} (see target/browser-test/swarm.log)`);
        const clients = await api('/clients');
        return clients.length === DEVICES + 1 + SWARM || `${clients.length} registered`;
      });
      return sw;
    });
    const swarmAlive = () => { if (swarm.exitCode !== null) fail(`the swarm exited with ${swarm.exitCode} (see target/browser-test/swarm.log)`); };

    // Wave 1 (1 % of 200) is sw-000, sw-001; wave 2 (up to 10 %) is sw-002 .. sw-009 and the ten of
    // the other class; the rest come after. One mesh (all on 127.0.0.1): list order is wave order.
    const haltedTarget = [...range(0, 10), ...range(SWARM_GOOD, SWARM), ...range(10, 190)].map(swarmName);
    const halted = await step('a campaign over 200 devices whose 2nd wave has 10 of another class is created from the page', async () => {
      await byId('nav-campaigns').click();
      return createCampaign(page, { release: releaseId, name: 'swarm: wave 2 fails', endpoints: haltedTarget, waves: '1,10,50,100',
        threshold: 0.1, soak: 1, maxConcurrent: 200, maxPerMesh: 200 });
    });
    // The CLI follows it from the start: `--watch` must return by itself once it is final.
    const cliEnv = { OTAFLEET_URL: base, OTAFLEET_TOKEN: TOKEN };
    const watched = runAsync('lwm2m-server', ['campaign', 'show', String(halted), '--watch', '--json'], cliEnv, 60);
    watched.catch(() => {});

    await step(`campaign #${halted} is shown halted at wave 2 with the reason (live)`, async () => {
      const seen = await pageReaches(page, halted, 'halted', 40);
      log(`     states shown on the page: ${seen.join(' → ')}`);
      swarmAlive();
      const reason = (await text('campaign-reason')).trim();
      if (!/wave 2/.test(reason) || !/threshold/.test(reason)) fail(`the page gives the reason ${JSON.stringify(reason)}`);
      log(`     ${reason}`);
    });

    const haltedView = await step('GET /api/campaigns/{id}: halted at wave 2, no device of a later wave started', async () => {
      // Devices already in flight finish after the halt: wait until none is running.
      let v;
      await waitFor('nothing running in the halted campaign', 30, async () => {
        v = await api(`/campaigns/${halted}`);
        return v.totals.running === 0 || `${JSON.stringify(v.totals)}`;
      });
      if (v.state !== 'halted') fail(`the server says ${v.state}`);
      if (v.current_wave !== 1) fail(`halted at wave index ${v.current_wave}, want 1 (the 2nd)`);
      if (!/wave 2/.test(v.reason || '')) fail(`the reason is ${JSON.stringify(v.reason)}`);
      if (v.waves.length !== 4 || v.waves.map((w) => w.size).join() !== '2,18,80,100') fail(`waves ${JSON.stringify(v.waves.map((w) => w.size))}, want 2,18,80,100`);
      const w2 = v.waves[1].counts;
      if (w2.failed === 0 || w2.failed / (w2.failed + w2.succeeded) <= 0.1) fail(`wave 2 counts ${JSON.stringify(w2)}: not over the threshold`);
      for (const d of v.devices) {
        const other = d.endpoint >= swarmName(SWARM_GOOD);
        if (d.wave >= 2 && (d.status !== 'skipped' || d.job_id !== null || d.started_at_ms !== null)) fail(`${d.endpoint} of wave ${d.wave + 1} was started: ${JSON.stringify(d)}`);
        if (other && d.status === 'failed' && !/Result 6/.test(d.error || '')) fail(`${d.endpoint} failed with ${JSON.stringify(d.error)}, want Update Result 6`);
        if (other && !['failed', 'skipped'].includes(d.status)) fail(`${d.endpoint} (other class) is ${d.status}`);
      }
      if (v.waves[2].counts.skipped !== 80 || v.waves[3].counts.skipped !== 100) fail(`waves 3 and 4: ${JSON.stringify([v.waves[2].counts, v.waves[3].counts])}, want all skipped`);
      await pageShows(page, v);
      if ((await byId('campaign-device-row').count()) !== SWARM_GOOD) fail(`the device table does not list the ${SWARM_GOOD} devices`);
      log(`     ${v.waves.map((w) => `wave ${w.wave + 1}: ${w.counts.succeeded} ok, ${w.counts.failed} failed, ${w.counts.skipped} skipped of ${w.size}`).join('; ')}`);
      await shoot(page, SCREENSHOT_HALTED);
      log(`     screenshot ${path.relative(ROOT, SCREENSHOT_HALTED)}`);
      return v;
    });

    await step('the CLI: `campaign show --watch --json` exits when it is final, and it and `show --json` say what the API says', async () => {
      const fromWatch = JSON.parse(await watched);
      const fromShow = JSON.parse(run('lwm2m-server', ['--url', base, '--token', TOKEN, 'campaign', 'show', String(halted), '--json']));
      const summary = (v) => JSON.stringify({ state: v.state, reason: v.reason, wave: v.current_wave, totals: v.totals,
        waves: v.waves.map((w) => [w.size, w.counts]) });
      const want = summary(haltedView);
      if (summary(fromWatch) !== want) fail(`--watch printed ${summary(fromWatch)}, the API says ${want}`);
      if (summary(fromShow) !== want) fail(`show --json printed ${summary(fromShow)}, the API says ${want}`);
      const devs = (v) => JSON.stringify(v.devices.map((d) => [d.endpoint, d.wave, d.status, d.error]));
      if (devs(fromShow) !== devs(haltedView)) fail('show --json lists other devices or outcomes than the API');
      const text = run('lwm2m-server', ['--url', base, '--token', TOKEN, 'campaign', 'show', String(halted)]);
      if (!/\(halted\)/.test(text.split('\n')[0]) || !/wave 2/.test(text.split('\n')[0])) fail(`the text view starts ${JSON.stringify(text.split('\n')[0])}`);
      log(`     CLI: ${text.split('\n')[0]}`);
    });

    const release3 = await step('a newer release 3.0.0 for sensor-rev-b is added with the CLI', () => {
      const img = path.join(WORK, 'image-3.0.0.bin');
      const env = path.join(WORK, 'release-3.0.0.suit');
      run('lwm2m-client', ['make-image', '--version', '3.0.0', '--size', '4096', '-o', img]);
      run('suit', ['create', '--image', img, '--vendor-id', 'acme.example', '--class-id', 'sensor-rev-b', '--sequence', '3',
        '--uri', 'image', '--version', '3.0.0', '--key', key, '-o', env]);
      return JSON.parse(run('lwm2m-server', ['--url', base, '--token', TOKEN, '--json', 'firmware', 'add', env, img])).id;
    });

    const clean = await step('a campaign of 3.0.0 over the 200 devices of the right class is created from the page', async () => {
      await byId('nav-campaigns').click();
      return createCampaign(page, { release: release3, name: 'swarm: 200 clean', endpoints: range(0, SWARM_GOOD).map(swarmName), waves: '1,10,50,100',
        threshold: 0.1, soak: 1, maxConcurrent: 200, maxPerMesh: 200 });
    });

    await step(`campaign #${clean} is shown completed with ${SWARM_GOOD} succeeded (live)`, async () => {
      const seen = await pageReaches(page, clean, 'completed', 90);
      log(`     states shown on the page: ${seen.join(' → ')}`);
      if (!seen.includes('soaking')) fail(`the page never showed a soak (it showed ${seen.join(', ')})`);
      swarmAlive();
      const v = await api(`/campaigns/${clean}`);
      if (v.state !== 'completed' || v.totals.succeeded !== SWARM_GOOD) fail(`the server says ${v.state} ${JSON.stringify(v.totals)}`);
      await pageShows(page, v);
      if ((await text('total-succeeded')) !== String(SWARM_GOOD)) fail('the page does not count 200 succeeded');
      log(`     ${v.waves.map((w) => `wave ${w.wave + 1}: ${w.counts.succeeded}/${w.size}`).join(', ')}; ${((v.finished_at_ms - v.created_at_ms) / 1000).toFixed(1)} s from creation to completion`);
      await shoot(page, SCREENSHOT_200);
      log(`     screenshot ${path.relative(ROOT, SCREENSHOT_200)}`);
    });

    if (pageErrors.length) fail(`errors in the page: ${pageErrors.join(' | ')}`);
  } finally {
    await browser.close();
  }
}

const watchdog = setTimeout(() => {
  console.error(`browser test: FAILED: over ${TOTAL_LIMIT_S} s in all`);
  stopAll();
  process.exit(1);
}, TOTAL_LIMIT_S * 1000);

process.on('exit', stopAll);
try {
  await main();
  clearTimeout(watchdog);
  stopAll();
  console.log(`browser test: ok in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  clearTimeout(watchdog);
  console.error(`browser test: FAILED: ${e.message}`);
  if (serverLog && fs.existsSync(serverLog)) {
    const tail = fs.readFileSync(serverLog, 'utf8').trim().split('\n').slice(-25).join('\n');
    console.error(`--- last lines of ${path.relative(ROOT, serverLog)} ---\n${tail}`);
  }
  stopAll();
  process.exit(1);
}
