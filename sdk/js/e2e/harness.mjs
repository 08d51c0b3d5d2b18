// Test harness for the browser tests: builds and starts a real jsonrtcd on
// a free loopback port, launches Debian's Chromium with fake media through
// playwright-core, and drives the demo page that jsonrtcd serves at /.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { test, before, after } from 'node:test';
import { chromium } from 'playwright-core';
import { reservePort } from './sip.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..', '..');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

function run(cmd, args, opts) {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts });
    p.on('error', rej);
    p.on('exit', (code) => (code === 0 ? res() : rej(new Error(`${cmd} ${args.join(' ')}: exit ${code}`))));
  });
}

function accepts(port) {
  return new Promise((res) => {
    const c = connect({ host: '127.0.0.1', port });
    c.on('connect', () => {
      c.destroy();
      res(true);
    });
    c.on('error', () => res(false));
  });
}

/**
 * Builds cmd/jsonrtcd into a temporary dir and starts it on a free port,
 * with `config` (YAML text, optional) as its configuration file. Resolves
 * once it accepts connections and serves the demo page at /.
 */
export async function startGateway({ config } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'jsonrtc-e2e-'));
  // JSONRTCD_BIN runs a prebuilt gateway instead of building this tree's.
  const bin = process.env.JSONRTCD_BIN || join(dir, 'jsonrtcd');
  try {
    if (!process.env.JSONRTCD_BIN) await run('go', ['build', '-o', bin, './cmd/jsonrtcd'], { cwd: repoRoot });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  // A reserved port, not one the kernel freed (see reservePort): jsonrtcd
  // could take port 0, but names the port it got only in an info log,
  // which a test's config may silence.
  const reserved = await reservePort();
  const { port } = reserved;
  // No metrics listener: its default loopback port would collide between gateways.
  // Its own session store (data directory) too: jsonrtcd locks the one it
  // uses, and several gateways run at once.
  const args = ['-listen', `127.0.0.1:${port}`, '-metrics-listen', '-', '-data', join(dir, 'data')];
  if (config) {
    const file = join(dir, 'jsonrtcd.yaml');
    await writeFile(file, config);
    args.push('-config', file);
  }
  const logs = [];
  const keep = (buf) => {
    for (const line of buf.toString().split('\n')) if (line) logs.push(line);
    if (logs.length > 4000) logs.splice(0, logs.length - 4000);
  };
  let proc;
  let exited = null;
  let exit;
  // Starts the process and waits until it accepts connections.
  const launch = async () => {
    exited = null;
    proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    exit = new Promise((r) => proc.on('exit', (code, sig) => r((exited = { code, sig }))));
    for (;;) {
      if (exited) throw new Error(`jsonrtcd exited early: ${JSON.stringify(exited)}\n${logs.join('\n')}`);
      if (await accepts(port)) break;
      await Promise.race([exit, new Promise((r) => setTimeout(r, 50))]);
    }
  };
  try {
    await launch();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    await reserved.release();
    throw err;
  }
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
    await reserved.release();
  };
  /**
   * Stops the gateway with signal (SIGKILL: a crash; SIGTERM: an
   * operator's restart) and starts it again on the same port,
   * configuration and data directory.
   */
  const restart = async (signal = 'SIGKILL') => {
    if (!exited) {
      proc.kill(signal);
      await exit;
    }
    await launch();
  };
  // cmd/jsonrtcd serves the demo page (web.Handler) at /: the tests load it from there.
  const home = await fetch(url + '/').then((r) => (r.ok ? r.text() : `HTTP ${r.status}`), (e) => String(e));
  if (!home.includes('jsonrtc softphone')) {
    await stop();
    throw new Error(`jsonrtcd does not serve the demo page at ${url}/: ${home.slice(0, 200)}`);
  }
  return {
    url,
    port,
    logs,
    stop,
    restart,
  };
}

/**
 * A file's fixture: before its tests, a gateway (startGateway's options),
 * a browser and one signed-in demo page per name; after them, all closed.
 * Returns the object the before hook fills: {gw, browser, [name]: page}.
 */
export function phones(names, gatewayOptions) {
  const f = {};
  before(async () => {
    f.gw = await startGateway(gatewayOptions);
    f.browser = await launchBrowser(f.gw);
    for (const n of names) f[n] = await openPhone(f.browser, f.gw, n);
  });
  after(async () => {
    await f.browser?.close();
    await f.gw?.stop();
  });
  return f;
}

/**
 * Launches Chromium (headless, fake media, fresh profile). Pages come from
 * the gateway's own origin, so the page and its WebSocket share it.
 */
export async function launchBrowser(gw) {
  const profile = await mkdtemp(join(tmpdir(), 'jsonrtc-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 390, height: 844 },
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  await context.grantPermissions(['microphone', 'camera'], { origin: gw.url });
  // The initial about:blank tab is not used.
  for (const p of context.pages()) await p.close();
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens the demo page in a new tab and signs in as `name` (open mode).
 * Keepalive is fast so that network-loss tests finish quickly.
 */
export async function openPhone(browser, gw, name, { query = 'ping=1000&pingPeriod=4000' } = {}) {
  const page = await browser.context.newPage();
  page.consoleLines = [];
  page.on('console', (m) => page.consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => page.consoleLines.push(`pageerror: ${e.message}`));
  recordWire(page);
  const resp = await page.goto(`${gw.url}/?${query}`);
  if (!resp?.ok()) throw new Error(`GET ${gw.url}/: ${resp?.status()}`);
  await page.fill('#name', name);
  await page.click('#signin-btn');
  await waitConn(page, /^(connected|resumed)$/);
  page.identity = (await page.textContent('#me')).trim();
  return page;
}

/** Waits until the page's connection state matches re. */
export async function waitConn(page, re, timeout = 15000) {
  await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('conn-state').dataset.state), re.source, { timeout, polling: 100 });
}

/** Waits until the page has shown connection state s since history index from. */
export async function waitConnSeen(page, s, from = 0, timeout = 15000) {
  await page.waitForFunction(([x, i]) => window.softphone.connHistory.indexOf(x, i) >= 0, [s, from], { timeout, polling: 100 });
}

/** The length of the page's connection state history. */
export function connMark(page) {
  return page.evaluate(() => window.softphone.connHistory.length);
}

/** Waits until the in-call status element matches. */
export async function waitCall(page, attr, value, timeout = 15000) {
  await page.waitForFunction(
    ([a, v]) => {
      const el = document.getElementById('call-status');
      return !document.getElementById('incall').hidden && el.dataset[a] === v;
    },
    [attr, value],
    { timeout, polling: 100 },
  );
}

/** caller calls callee with the dial form; callee accepts in the incoming dialog. */
export async function establishCall(caller, callee) {
  await caller.fill('#address', callee.identity);
  await caller.click('#call-btn');
  await callee.locator('#incoming').waitFor({ state: 'visible' });
  assert.equal((await callee.textContent('#incoming-from')).trim(), caller.identity);
  await waitCall(caller, 'state', 'alerting');
  await callee.click('#accept-btn');
  await waitCall(caller, 'state', 'established');
  await waitCall(callee, 'state', 'established');
}

/** Waits until the page shows no call (the dialer is back). */
export async function waitIdle(page) {
  await page.locator('#incall').waitFor({ state: 'hidden' });
  await page.locator('#dialer').waitFor({ state: 'visible' });
}

/** Ends the pages' calls (an afterEach: leave no call behind for the next test). */
export async function endCalls(pages) {
  for (const p of pages) {
    if (!p || p.isClosed()) continue;
    await p.evaluate(() => window.softphone.call?.end()).catch(() => {});
    await p.locator('#incall').waitFor({ state: 'hidden' }).catch(() => {});
  }
}

/**
 * Returns a test function whose tests print, when they fail, the consoles
 * of the pages and the gateway's log; `current()` gives them as they are
 * then ({gw, pages: {name: page}}).
 */
export function e2eTest(current) {
  return (name, fn) =>
    test(name, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        const { gw, pages } = current();
        for (const [who, p] of Object.entries(pages)) console.log(`--- ${who} console\n` + (p?.consoleLines ?? []).slice(-40).join('\n'));
        console.log('--- jsonrtcd\n' + (gw?.logs ?? []).slice(-60).join('\n'));
        throw err;
      }
    });
}

/** The sum of field over the inbound-rtp stats of kind on the current call's RTCPeerConnection (-1: none). */
function inboundSum(page, kind, field) {
  return page.evaluate(async ([k, f]) => {
    const pc = window.softphone.call?.peerConnection;
    if (!pc) return -1;
    let n = 0;
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'inbound-rtp' && (s.kind === k || s.mediaType === k)) n += s[f] ?? 0;
    }
    return n;
  }, [kind, field]);
}

/** Inbound audio RTP packets of the current call's RTCPeerConnection. */
export function inboundPackets(page) {
  return inboundSum(page, 'audio', 'packetsReceived');
}

/** Video frames decoded on the current call's RTCPeerConnection. */
export function framesDecoded(page) {
  return inboundSum(page, 'video', 'framesDecoded');
}

/** Polls fn until check(value) holds (like Playwright Test's expect.poll). */
export async function poll(fn, check, { timeout = 15000, interval = 100, message = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (check(last)) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${message}; last value ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Waits until the page's inbound audio packet count grows by `by`. */
export async function audioFlows(page, by = 25) {
  const start = await poll(() => inboundPackets(page), (n) => n >= 0, { message: 'a peer connection' });
  return poll(() => inboundPackets(page), (n) => n >= start + by, { message: `inbound audio on ${page.identity}` });
}

/** The current directions of the call's transceivers. */
export function directions(page) {
  return page.evaluate(() => window.softphone.call?.peerConnection?.getTransceivers().map((t) => t.currentDirection) ?? []);
}

/**
 * Records every JSON frame of every WebSocket the page opens, across
 * reloads, in page.wire: {dir: 'out'|'in', at: ms, socket: n, frame}.
 * page.wireWaiters lets waitWire resolve on the frame event itself.
 */
export function recordWire(page) {
  page.wire = [];
  page.wireWaiters = new Set();
  let sockets = 0;
  page.on('websocket', (ws) => {
    const socket = ++sockets;
    const add = (dir) => ({ payload }) => {
      if (typeof payload !== 'string' || payload === 'ping' || payload === 'pong') return;
      let frame;
      try {
        frame = JSON.parse(payload);
      } catch {
        return;
      }
      const entry = { dir, at: Date.now(), socket, frame };
      page.wire.push(entry);
      for (const w of [...page.wireWaiters]) w(entry);
    };
    ws.on('framesent', add('out'));
    ws.on('framereceived', add('in'));
  });
}

/**
 * Resolves with the first recorded frame (already seen after index `from`,
 * or still to come) for which match(entry) holds.
 */
export function waitWire(page, match, { from = 0, timeout = 15000, message = 'a frame' } = {}) {
  const seen = page.wire.slice(from).find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const waiter = (e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      page.wireWaiters.delete(waiter);
      resolve(e);
    };
    const timer = setTimeout(() => {
      page.wireWaiters.delete(waiter);
      reject(new Error(`timed out after ${timeout} ms waiting for ${message}`));
    }, timeout);
    page.wireWaiters.add(waiter);
  });
}

/**
 * A proxy in front of the gateway that, as many corporate proxies do,
 * refuses WebSocket upgrades (403) and passes plain HTTP through: the
 * page loaded from it can only reach the gateway over long-poll. The
 * Host header goes through unchanged, so the page's origin is the
 * proxy's own host, which the gateway accepts as its own.
 *
 * `blockUpgrades` lets upgrades through when false; `setDown(true)`
 * cuts every connection and refuses new ones (a network loss), `drop()`
 * only cuts the connections open now.
 */
export async function startBlockingProxy(gw) {
  const { createServer: httpServer, request } = await import('node:http');
  const net = await import('node:net');
  const sockets = new Set();
  const track = (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const proxy = { blockUpgrades: true, down: false, upgrades: { refused: 0, passed: 0 } };
  const server = httpServer((req, res) => {
    const up = request({ host: '127.0.0.1', port: gw.port, method: req.method, path: req.url, headers: req.headers, agent: false }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('socket', track);
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => {
    if (proxy.down) return s.destroy();
    track(s);
  });
  server.on('upgrade', (req, sock, head) => {
    track(sock);
    if (proxy.blockUpgrades || proxy.down) {
      proxy.upgrades.refused++;
      sock.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    proxy.upgrades.passed++;
    const up = net.connect(gw.port, '127.0.0.1', () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + '\r\n');
      if (head?.length) up.write(head);
      sock.pipe(up);
      up.pipe(sock);
    });
    track(up);
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  proxy.url = `http://127.0.0.1:${port}`;
  proxy.port = port;
  proxy.drop = () => {
    for (const s of sockets) s.destroy();
  };
  proxy.setDown = (down) => {
    proxy.down = down;
    if (down) proxy.drop();
  };
  proxy.close = () =>
    new Promise((r) => {
      proxy.drop();
      server.close(() => r());
    });
  return proxy;
}

/** Waits until page's contact `who` shows status (data-status) and text. */
export async function waitContact(page, who, status, text, timeout = 15000) {
  try {
    await page.waitForFunction(
      ([w, s, x]) => {
        const li = document.querySelector(`#presence-list li[data-target="${w}"]`);
        return !!li && li.dataset.status === s && li.querySelector('.what').textContent === x;
      },
      [who, status, text],
      { timeout, polling: 100 },
    );
  } catch (err) {
    const li = page.locator(`#presence-list li[data-target="${who}"]`);
    const have = (await li.count()) ? `${await li.getAttribute('data-status')} / ${await li.locator('.what').textContent()}` : 'no contact';
    throw new Error(`${page.identity}: contact ${who} is not ${status} / ${text} (has ${have}): ${err.message}`);
  }
}

/** page watches who with the contact form, until who shows available. */
export async function watchContact(page, who) {
  await page.fill('#watch-to', who);
  await page.click('#watch-btn');
  await waitContact(page, who, 'open', 'available');
}

/** caller calls callee with the dial form; callee accepts; both established. */
export async function answeredCall(caller, callee) {
  await caller.fill('#address', callee.identity);
  await caller.click('#call-btn');
  await callee.locator('#incoming').waitFor({ state: 'visible' });
  await callee.click('#accept-btn');
  await waitCall(caller, 'state', 'established');
  await waitCall(callee, 'state', 'established');
}

/**
 * Runs fn; when it fails, prints the pages' consoles (pages: {name: page})
 * and the gateway's log before rethrowing.
 */
export async function printOnFailure(pages, gw, fn) {
  try {
    await fn();
  } catch (err) {
    for (const [n, p] of Object.entries(pages)) console.log(`--- ${n} console\n` + (p?.consoleLines ?? []).slice(-40).join('\n'));
    console.log('--- jsonrtcd\n' + gw.logs.slice(-60).join('\n'));
    throw err;
  }
}
