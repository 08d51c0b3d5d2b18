// Browser test: the SDK's generic request of declared actions
// (docs/routing.md, Templates; docs/protocol.md §2.8; issue 16). A real
// jsonrtcd whose configuration declares a webhook action, answered by a
// tiny HTTP server of the test that checks the signature; and a call
// action (an INFO over SIP) asked in a web-to-web call, which goes to the
// other page as a request of the action.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { startGateway, launchBrowser, openPhone, waitCall, answeredCall, printOnFailure } from './harness.mjs';

const SECRET = 'e2e-webhook-secret-0123456789abcdef';

let gw;
let browser;
let alice;
let bob;
let hook;
/** What the webhook received: {signature, body, valid}. */
const hooked = [];

/** The signature check of docs/routing.md (Templates), done here on its own, not with the gateway's code. */
function validSignature(header, body) {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header || '');
  if (!m) return false;
  if (Math.abs(Date.now() / 1000 - Number(m[1])) > 60) return false;
  const want = createHmac('sha256', SECRET).update(`${m[1]}.`).update(body).digest();
  return timingSafeEqual(want, Buffer.from(m[2], 'hex'));
}

before(async () => {
  hook = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const signature = req.headers['x-jsonrtc-signature'];
      const valid = validSignature(signature, body);
      const parsed = JSON.parse(body.toString());
      hooked.push({ signature, body: parsed, valid });
      if (!valid) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ reason: 'bad signature' }));
      } else if (parsed.payload.q === 'nobody') {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ reason: 'no such customer' }));
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ payload: { found: parsed.payload.q, by: parsed.identity, tenant: parsed.headers?.['X-Tenant'] ?? null } }));
      }
    });
  });
  await new Promise((r) => hook.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${hook.address().port}/jsonrtc`;
  gw = await startGateway({
    config: `templates:
  webhook_networks: [127.0.0.0/8]
  actions:
    - action: x-lookup
      package: messaging
      headers: {optional: [X-Tenant]}
      schema: {type: object, required: [q], properties: {q: {type: string, minLength: 1}}}
      webhook: {url: "${url}", secret: ${SECRET}, timeout: 2s}
    - action: x-score
      package: call
      headers: {required: [X-Game]}
      schema: {type: object, required: [points], properties: {points: {type: integer, minimum: 0}}}
      sip: {method: INFO, info_package: x-score, content_type: application/json}
`,
  });
  browser = await launchBrowser(gw);
  alice = await openPhone(browser, gw, 'alice');
  bob = await openPhone(browser, gw, 'bob');
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  await new Promise((r) => (hook ? hook.close(() => r()) : r()));
});

/** Runs session.request in page; resolves with {ok, code, reason, payload, headers}. */
function request(page, pkg, action, headers, payload) {
  return page.evaluate(
    async ([p, a, h, b]) => {
      try {
        const r = await window.softphone.session.request(p, a, h, b);
        return { ok: true, code: r.code, payload: r.payload };
      } catch (e) {
        return { ok: false, name: e.name, code: e.code, reason: e.reason };
      }
    },
    [pkg, action, headers, payload],
  );
}

test('session.request of a webhook action: a signed POST, its answer the response; a refused payload names the field; a 4xx is the error', async () => {
  await printOnFailure({ alice }, gw, async () => {
    const r = await request(alice, 'messaging', 'x-lookup', { 'X-Tenant': 'acme' }, { q: 'bob' });
    assert.deepEqual(r, { ok: true, code: 200, payload: { found: 'bob', by: alice.identity, tenant: 'acme' } });
    assert.equal(hooked.length, 1);
    const [h] = hooked;
    assert.ok(h.valid, `signature ${h.signature} does not check`);
    assert.deepEqual(
      { package: h.body.package, action: h.body.action, identity: h.body.identity, headers: h.body.headers, payload: h.body.payload },
      { package: 'messaging', action: 'x-lookup', identity: alice.identity, headers: { 'X-Tenant': 'acme' }, payload: { q: 'bob' } },
    );

    // The schema refuses it: 400 naming the field, the webhook never asked.
    const bad = await request(alice, 'messaging', 'x-lookup', {}, { q: '' });
    assert.equal(bad.ok, false);
    assert.equal(bad.name, 'JsonRtcError');
    assert.equal(bad.code, 400);
    assert.match(bad.reason, /payload\.q/);
    // A header the template does not list is refused too.
    const extra = await request(alice, 'messaging', 'x-lookup', { 'X-Other': '1' }, { q: 'bob' });
    assert.equal(extra.code, 400);
    assert.match(extra.reason, /X-Other/i);
    assert.equal(hooked.length, 1, 'a refused request reached the webhook');

    // The webhook's 4xx is the request's error, with its reason.
    const missing = await request(alice, 'messaging', 'x-lookup', {}, { q: 'nobody' });
    assert.deepEqual(missing, { ok: false, name: 'JsonRtcError', code: 404, reason: 'no such customer' });
    assert.equal(hooked.length, 2);
    assert.ok(hooked[1].valid);

    // An action nobody declared is 405, as before templates.
    const undeclared = await request(alice, 'messaging', 'x-nothing', {}, {});
    assert.equal(undeclared.code, 405);
  });
});

test('call.request in a web-to-web call: the other page gets the request and its answer comes back; refused by the schema on the sender\'s side; 405 when the other page does not listen', async () => {
  await printOnFailure({ alice, bob }, gw, async () => {
    await bob.evaluate(() => {
      window.requestsSeen = [];
      window.stopListening = window.softphone.session.on('request', (req) => {
        window.requestsSeen.push({ action: req.action, from: req.from, headers: req.headers, payload: req.payload });
        req.respond({ payload: { rank: 1 } });
      });
    });
    await answeredCall(alice, bob);
    const ask = (points) =>
      alice.evaluate(async (p) => {
        try {
          const r = await window.softphone.call.request('x-score', { 'X-Game': 'chess' }, { points: p });
          return { ok: true, code: r.code, payload: r.payload };
        } catch (e) {
          return { ok: false, name: e.name, code: e.code, reason: e.reason };
        }
      }, points);
    assert.deepEqual(await ask(3), { ok: true, code: 200, payload: { rank: 1 } });
    assert.deepEqual(await bob.evaluate(() => window.requestsSeen), [
      { action: 'x-score', from: alice.identity, headers: { 'X-Game': 'chess' }, payload: { points: 3 } },
    ]);
    // The schema is checked on alice's side: bob never sees it.
    const bad = await ask(-1);
    assert.equal(bad.code, 400, `refused with ${bad.code} ${bad.reason}`);
    assert.match(bad.reason, /payload\.points/);
    assert.equal(await bob.evaluate(() => window.requestsSeen.length), 1);
    // Without a listener bob's SDK answers 405 at once; the call goes on.
    await bob.evaluate(() => window.stopListening());
    const unheard = await ask(4);
    assert.equal(unheard.code, 405, `refused with ${unheard.code} ${unheard.reason}`);
    assert.equal(await bob.evaluate(() => window.softphone.call?.state), 'established');
    await waitCall(alice, 'state', 'established');
    await alice.click('#hangup-btn');
    await bob.locator('#incall').waitFor({ state: 'hidden' });
  });
});
