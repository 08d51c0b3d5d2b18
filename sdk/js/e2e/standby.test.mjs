// Browser test: standby and push wake-up (docs/protocol.md §4.9). Bob's
// page goes to standby with a push channel of a push service written for
// the test (headless Chromium reaches no real one); alice calls; the
// gateway pushes; the push service decrypts it (RFC 8291) and hands it to
// bob's service worker through the DevTools protocol
// (ServiceWorker.deliverPushMessage); the worker shows the notification
// and wakes the page, which resumes, rings and answers, with audio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import crypto from 'node:crypto';
import { startGateway, launchBrowser, openPhone, waitConn, waitCall, waitWire, audioFlows, poll, printOnFailure } from './harness.mjs';

const b64u = (buf) => Buffer.from(buf).toString('base64url');

/** The browser's side of RFC 8291: the plaintext of a push body. */
function decrypt(body, ecdh, auth) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const ct = body.subarray(21 + idlen);
  const secret = ecdh.computeSecret(asPublic);
  const info = (label, ...parts) => Buffer.concat([Buffer.from(label + '\0'), ...parts]);
  const ikm = Buffer.from(crypto.hkdfSync('sha256', secret, auth, info('WebPush: info', ecdh.getPublicKey(), asPublic), 32));
  const cek = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info('Content-Encoding: aes128gcm'), 16));
  const nonce = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info('Content-Encoding: nonce'), 12));
  const d = crypto.createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(ct.subarray(ct.length - 16));
  const rec = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
  return rec.subarray(0, rec.lastIndexOf(2)).toString();
}

let gw;
let browser;
let alice;
let bob;
let pushService;
const pushes = [];
let onPush = () => {};

before(async () => {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const vapid = privateKey.export({ format: 'jwk' }).d;
  pushService = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      pushes.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201).end();
      onPush();
    });
  });
  await new Promise((r) => pushService.listen(0, '127.0.0.1', r));
  gw = await startGateway({
    config: `push:\n  vapid_private_key: ${vapid}\n  subject: mailto:ops@example.com\n  allowed_endpoints: ["127.0.0.1:*"]\n`,
  });
  browser = await launchBrowser(gw);
  await browser.context.grantPermissions(['microphone', 'camera', 'notifications'], { origin: gw.url });
  alice = await openPhone(browser, gw, 'alice');
  bob = await openPhone(browser, gw, 'bob');
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  pushService?.close();
});

/** Bob's service worker registration id, read through the DevTools protocol (once). */
let worker;
async function bobWorker() {
  if (worker) return worker;
  await bob.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const cdp = await browser.context.newCDPSession(bob);
  const regs = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
    for (const r of registrations) regs.set(r.scopeURL, r.registrationId);
  });
  await cdp.send('ServiceWorker.enable');
  const scope = `${gw.url}/`;
  const end = Date.now() + 10000;
  while (!regs.has(scope) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  assert.ok(regs.has(scope), `service worker registered at ${scope}: ${[...regs.keys()]}`);
  worker = { cdp, id: regs.get(scope) };
  return worker;
}

/**
 * Puts bob's page to standby with a push channel of the test's push
 * service (keys it can decrypt with). Resolves with the standby's expiry
 * and `delivered`: the next push, checked, decrypted and handed to bob's
 * service worker (ServiceWorker.deliverPushMessage); it resolves with the
 * push's plaintext.
 */
async function sleepBob(name) {
  const { cdp, id } = await bobWorker();
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = crypto.randomBytes(16);
  const channel = { endpoint: `http://127.0.0.1:${pushService.address().port}/push/${name}`, keys: { p256dh: b64u(ecdh.getPublicKey()), auth: b64u(auth) } };
  const delivered = new Promise((resolve, reject) => {
    onPush = () => {
      onPush = () => {};
      const p = pushes[pushes.length - 1];
      let data;
      try {
        assert.match(p.headers.authorization, /^vapid t=.+, k=B/);
        assert.equal(p.headers.urgency, 'high');
        data = decrypt(p.body, ecdh, auth);
      } catch (err) {
        reject(err);
        return;
      }
      cdp.send('ServiceWorker.deliverPushMessage', { origin: gw.url, registrationId: id, data }).then(() => resolve(data), reject);
    };
  });
  delivered.catch(() => {});
  await waitConn(bob, /^(connected|resumed)$/);
  const expiry = await bob.evaluate(async (ch) => {
    window.softphone.pushChannel = ch;
    return window.softphone.session.standby(ch);
  }, channel);
  await waitConn(bob, /^standby$/);
  return { expiry, delivered };
}

/** The titles of the notifications bob's service worker shows. */
const workerNotifications = () => bob.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).map((n) => n.title));

test('a page in standby is woken by a push: notification, resume, ringing, answered, audio', async () => {
  await printOnFailure({ alice, bob }, gw, async () => {
    // The page got the gateway's VAPID key and registered its worker.
    assert.match(await bob.evaluate(async () => (await fetch('config.json').then((r) => r.json())).vapidPublicKey), /^B[A-Za-z0-9_-]{86}$/);
    const { expiry, delivered } = await sleepBob('bob');
    assert.equal(expiry, 3600);

    await alice.fill('#address', bob.identity);
    await alice.click('#call-btn');
    const data = JSON.parse(await delivered);
    assert.deepEqual(data, { kind: 'call', from: alice.identity });
    // The worker handles the push after the delivery returns, and tells
    // the page whether it could show the notification.
    const push = await poll(() => bob.evaluate(() => window.softphone.lastPush ?? null), (p) => p !== null, { message: 'the wake-up message' });
    assert.equal(push.notificationError, null);
    await poll(workerNotifications, (titles) => titles.includes(`Incoming call from ${alice.identity}`), { message: 'the notification' });

    await waitConn(bob, /^resumed$/);
    await bob.locator('#incoming').waitFor({ state: 'visible' });
    await bob.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    await waitCall(bob, 'state', 'established');
    await audioFlows(alice);
    await audioFlows(bob);
    assert.equal(pushes.length, 1, 'one push');
    // Answered: the worker's notification of the call goes.
    await poll(workerNotifications, (titles) => titles.length === 0, { message: "the worker's notification closed" });
    await alice.click('#hangup-btn');
    await bob.locator('#incall').waitFor({ state: 'hidden' });
  });
});

test('a hidden page woken by a push for a call shows one notification, the worker\'s, not its own as well', async () => {
  await printOnFailure({ alice, bob }, gw, async () => {
    // The tab is "hidden" (as phone.test.mjs makes it), and the page's
    // own notifications are recorded.
    await bob.evaluate(() => {
      Object.defineProperty(document, 'hidden', { value: true, configurable: true });
      window.__notes = [];
      window.__Notification = window.Notification;
      window.Notification = class {
        static permission = 'granted';
        constructor(title, opts) {
          window.__notes.push({ title, opts, closed: false });
        }
        close() {}
      };
    });
    try {
      const { delivered } = await sleepBob('bob-hidden');
      await alice.fill('#address', bob.identity);
      await alice.click('#call-btn');
      await delivered;
      await waitConn(bob, /^resumed$/);
      await bob.locator('#incoming').waitFor({ state: 'visible' });
      assert.equal(await bob.title(), `☎ ${alice.identity} is calling`, 'the title still says so');
      assert.deepEqual(await workerNotifications(), [`Incoming call from ${alice.identity}`]);
      assert.deepEqual(await bob.evaluate(() => window.__notes.map((n) => n.title)), [], "no page notification besides the worker's");
      await bob.click('#accept-btn');
      await waitCall(alice, 'state', 'established');
      await poll(workerNotifications, (titles) => titles.length === 0, { message: "the worker's notification closed on the answer" });
      await alice.click('#hangup-btn');
      await bob.locator('#incall').waitFor({ state: 'hidden' });
    } finally {
      await bob.evaluate(() => {
        delete document.hidden;
        window.Notification = window.__Notification;
      });
    }
  });
});

test('signing out in standby logs out at the gateway: a caller hears 480 at once, no push, the old id resumes nothing', async () => {
  await printOnFailure({ alice, bob }, gw, async () => {
    await sleepBob('bob-signout');
    const oldId = await bob.evaluate(() => window.softphone.session.id);
    const pushed = pushes.length;

    // Without a socket the close had nothing to send 1000 on: the session
    // slept on at the gateway until push.standby_timeout.
    await bob.evaluate(() => window.softphone.session.close());
    await waitConn(bob, /^closed$/);

    await alice.evaluate(() => document.getElementById('events').replaceChildren());
    const mark = alice.wire.length;
    await alice.fill('#address', bob.identity);
    await alice.click('#call-btn');
    await alice.waitForFunction(() => !document.getElementById('call-notice').hidden, null, { timeout: 15000, polling: 50 });
    const code = await alice.evaluate(() => document.getElementById('call-notice').dataset.code);
    assert.ok(code === '480' || code === '404', `the call to a logged-out identity fails 480 or 404 (got ${code})`);
    // Timed on the wire, from the call's start to the gateway's answer:
    // the page's own clicks and rendering, slow on a loaded machine, are
    // not what is asserted.
    const start = alice.wire.slice(mark).find((x) => x.dir === 'out' && x.frame.control?.package_type === 'call' && x.frame.header?.action === 'start');
    assert.ok(start, 'the call start on the wire');
    const answer = await waitWire(alice, (x) => x.dir === 'in' && x.frame.control?.correlation_id === start.frame.control.correlation_id && x.frame.header?.error_code === Number(code), {
      from: mark,
      message: `the error ${code} answering the call start`,
    });
    const took = answer.at - start.at;
    assert.ok(took < 3000, `at once, not at the ring timeout (${took} ms)`);
    assert.equal(pushes.length, pushed, 'no push for a logged-out session');

    // A resume of the old id gets a new session (docs/protocol.md §4.5).
    const resumed = await alice.evaluate(
      ({ id, identity }) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(window.softphone.session.url, ['jsonrtc']);
          ws.onopen = () => ws.send(JSON.stringify({ control: { type: 'request', package_type: 'register', session_id: id, version: '1.0' }, header: { action: 'connect', initiator: identity, cslr: 0, cslw: 0, csuw: 0 } }));
          ws.onmessage = (ev) => {
            const f = JSON.parse(ev.data);
            if (f.header?.action !== 'connect') return;
            ws.close(1000);
            resolve(f.control.session_id);
          };
          ws.onerror = () => reject(new Error('websocket error'));
        }),
      { id: oldId, identity: bob.identity },
    );
    assert.ok(resumed && resumed !== oldId, `the old session is gone: its resume opened ${resumed}, not ${oldId}`);
  });
});
