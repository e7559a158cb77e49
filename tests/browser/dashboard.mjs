// The dashboard in a real browser: a real lwm2m-server and real lwm2m-client device processes on
// loopback, Debian's Chromium driven headless by playwright-core. Signs in (a wrong token first),
// looks at the fleet and one device, uploads a signed release through the page, creates a
// campaign from the page, waits until the page shows it completed, and checks what the page shows
// against GET /api/campaigns/{id}. Screenshots go to target/dashboard.png (the campaign),
// target/dashboard-fleet.png and target/dashboard-device.png.
//
// Uses the debug binaries that `cargo test --workspace --all-features` built (lwm2m-server,
// lwm2m-client, suit) in $CARGO_TARGET_DIR or target/. Run: node tests/browser/dashboard.mjs
// (after `npm ci --prefix tests/browser`, which scripts/setup.sh does).

import { execFileSync, spawn } from 'node:child_process';
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
const DEVICES = 6;
const TOKEN = `browser-test-${process.pid}-${Date.now()}`;
const OUTCOMES = ['succeeded', 'failed', 'unreachable', 'cancelled', 'skipped', 'running', 'queued'];
const TOTAL_LIMIT_S = 300;

const started = Date.now();
const children = [];
let serverLog = '';

function log(msg) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
}

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

async function main() {
  await step('binaries and Chromium are there', () => {
    for (const b of ['lwm2m-server', 'lwm2m-client', 'suit']) {
      if (!fs.existsSync(path.join(BIN, b))) fail(`${path.join(BIN, b)} is not built: run \`cargo test --workspace --all-features\` (or \`cargo build -p lwm2m-server -p lwm2m-client -p suit-manifest --all-features\`) first`);
    }
    if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium)`);
  });
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(WORK, { recursive: true });
  const key = path.join(WORK, 'key.pem');
  const pub = path.join(WORK, 'key.pub.pem');
  const [coapPort, httpPort] = [await freeUdpPort(), await freeTcpPort()];
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
    });

    await step('a device: its objects, Object 5 and a read', async () => {
      await byId('device-link-dash-dev-1').click();
      await waitFor('the object buttons', 10, async () => (await byId('device-objects').locator('button').count()) > 0);
      await waitFor('/5/0/3 State Idle', 30, async () => /Idle/.test(await text('fw-state')) || text('fw-note'));
      await byId('dm-path').fill('/3/0/3');
      await byId('dm-read').click();
      await waitFor('/3/0/3 = 1.0.0 in the result', 30, async () => /"1\.0\.0"/.test(await text('dm-result')) || text('dm-result'));
      await byId('object-/5/0').click();
      await waitFor('the resources of /5/0 from Discover', 30, async () => (await page.getByTestId('res-row-/5/0/3').count()) === 1);
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
      await waitFor('Update Result 1 Success', 30, async () => /1 Success/.test(await text('fw-result')) || text('fw-result'));
      await page.getByRole('button', { name: 'audit' }).first().click();
      await byId('audit-table').waitFor();
      await page.screenshot({ path: SCREENSHOT_DEVICE, fullPage: true });
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
