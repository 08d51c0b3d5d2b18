// The SDK's long-poll transport against a real jsonrtcd, in Node without a
// browser: Node 20 has fetch and no WebSocket, so the default transports
// (WebSocket, then long-poll) fall to long-poll as a page behind a proxy
// that blocks WebSocket does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './harness.mjs';
import { Session } from '../src/index.js';

let gw;
before(async () => {
  gw = await startGateway();
});
after(() => gw?.stop());

function session(name, opts = {}) {
  return new Session({
    url: gw.url.replace('http', 'ws') + '/ws/',
    identity: name,
    storage: opts.storage ?? null,
    WebSocket: opts.WebSocket ?? null,
    fetch: opts.fetch,
    keepalive: { interval: 1000, period: 5000 },
    reconnect: { initial: 50, max: 200, jitter: 0 },
  });
}

function waitFor(check, what, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const end = Date.now() + timeout;
    const tick = () => {
      if (check()) return resolve();
      if (Date.now() > end) return reject(new Error(`timed out waiting for ${what}\n${gw.logs.slice(-30).join('\n')}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

test('long-poll against jsonrtcd: connect, messages both ways, a lost GET resumed with nothing lost or duplicated, logout', async () => {
  // Bob's fetch fails one GET mid-stream, as a dropped network does.
  let breakNextGet = false;
  const bobFetch = (url, init) => {
    if (breakNextGet && (init?.method ?? 'GET') === 'GET') {
      breakNextGet = false;
      return Promise.reject(new TypeError('network down'));
    }
    return fetch(url, init);
  };
  const alice = session('alice');
  const bob = session('bob', { fetch: bobFetch });
  await alice.connect();
  await bob.connect();
  assert.equal(alice.transport, 'longpoll');
  assert.equal(bob.transport, 'longpoll');
  const states = [];
  bob.on('state', (s) => states.push(s.state));
  const got = [];
  bob.on('message', (m) => got.push(m.body));
  const back = [];
  alice.on('message', (m) => back.push(m.body));

  const N = 60;
  const sent = [];
  for (let i = 0; i < N; i++) {
    sent.push(alice.sendMessage('bob', `m${i}`));
    if (i === N / 2) breakNextGet = true;
  }
  const codes = await Promise.all(sent);
  assert.ok(codes.every((c) => c === 200), `delivery reports: ${codes}`);
  await waitFor(() => got.length >= N, `${N} messages at bob (has ${got.length})`);
  assert.deepEqual(got, Array.from({ length: N }, (_, i) => `m${i}`), 'in order, once each');
  assert.ok(states.includes('resumed'), `bob resumed: ${states}`);
  assert.equal(await bob.sendMessage('alice', 'pong'), 200);
  await waitFor(() => back.length === 1, 'the answer at alice');
  alice.close();
  bob.close();
});

test('long-poll: a session held by one long-poll connection is taken over by another (close 4000)', async () => {
  // Two pages of carol's sharing a sessionStorage: the second resumes the
  // first one's session, as a reload does.
  const m = new Map();
  const storage = { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v), removeItem: (k) => m.delete(k) };
  const a = session('carol', { storage });
  await a.connect();
  const b = session('carol', { storage });
  await b.connect();
  assert.equal(b.id, a.id, 'resumed');
  assert.equal(b.state, 'resumed');
  await waitFor(() => a.state === 'failed', 'the first connection told 4000');
  b.close();
});
