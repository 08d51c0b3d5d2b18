// Browser tests: presence between demo pages through a real jsonrtcd (the
// gateway is the presence server between web users), the SDK's presence
// Subscription against it (refresh, resume, reload), and the voicemail
// indicator when the gateway has no voicemail service.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, waitConn, waitConnSeen, connMark, waitWire, waitContact } from './harness.mjs';

// Short lifetimes so that refreshes and the resume timeout happen within
// the test: subscriptions last 10 s (the SDK refreshes 5 s before), a
// session outlives its socket for 10 s.
const EXPIRY = 10;
const RESUME_TIMEOUT = 10;
const CONFIG = `presence:\n  expiry: ${EXPIRY}\n  min_expiry: ${EXPIRY}\nsession:\n  resume_timeout: ${RESUME_TIMEOUT}s\n`;

let gw;
let browser;
const pages = {};

before(async () => {
  gw = await startGateway({ config: CONFIG });
  browser = await launchBrowser(gw);
  for (const name of ['alice', 'bob', 'carol']) pages[name] = await openPhone(browser, gw, name);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

/** A test that prints the pages' consoles and the gateway's log when it fails. */
function e2e(name, fn) {
  test(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      for (const [n, p] of Object.entries(pages)) console.log(`--- ${n} console\n` + (p?.consoleLines ?? []).slice(-40).join('\n'));
      console.log('--- jsonrtcd\n' + gw.logs.slice(-80).join('\n'));
      throw err;
    }
  });
}

const contact = (page, who) => page.locator(`#presence-list li[data-target="${who}"]`);

/** Watches `who` with the page's own form. */
async function watch(page, who) {
  await page.fill('#watch-to', who);
  await page.click('#watch-btn');
  await contact(page, who).waitFor();
}

const isPresence = (e) => e.frame.control?.package_type === 'presence';

/** The subsession of page's presence subscription to who (its first start). */
function subsessionOf(page, who) {
  const e = page.wire.find((x) => x.dir === 'out' && isPresence(x) && x.frame.header?.action === 'start' && x.frame.header.target === who);
  assert.ok(e, `${page.identity} subscribed to ${who}`);
  return e.frame.control.subsession_id;
}

/** The starts page sent on subsession id, from wire index `from`. */
const startsOn = (page, id, from = 0) =>
  page.wire.slice(from).filter((x) => x.dir === 'out' && isPresence(x) && x.frame.header?.action === 'start' && x.frame.control.subsession_id === id);

/** Presence notifies page received about who, from wire index `from`. */
const notifiesAbout = (page, who, from = 0) =>
  page.wire.slice(from).filter((x) => x.dir === 'in' && isPresence(x) && x.frame.header?.action === 'notify' && x.frame.payload?.presentity === who);

/** Sets the page's status and note with its controls and waits for the publish's 200. */
async function publish(page, status, note) {
  const want = JSON.stringify({ status, note });
  await page.fill('#my-note', note);
  // A status change publishes at once (with the note); else the Set button does.
  if ((await page.inputValue('#my-status')) !== status) await page.selectOption('#my-status', status);
  else await page.click('#note-btn');
  await page.waitForFunction((w) => document.getElementById('note-form').dataset.published === w, want, { timeout: 15000, polling: 100 });
}

/** Every presence subsession page has subscribed on, and the notifies' subsessions. */
function assertSingleSubscriptions(page, targets) {
  const ids = new Map(targets.map((t) => [t, subsessionOf(page, t)]));
  const starts = page.wire.filter((x) => x.dir === 'out' && isPresence(x) && x.frame.header?.action === 'start');
  for (const s of starts) {
    assert.equal(ids.get(s.frame.header.target), s.frame.control.subsession_id, `${page.identity}: every start for ${s.frame.header.target} is on one subsession`);
  }
  for (const [who, id] of ids) {
    const subs = new Set(notifiesAbout(page, who).map((n) => n.frame.control.subsession_id));
    assert.deepEqual([...subs], [id], `${page.identity}: notifies about ${who} come on one subsession`);
  }
  for (const [who, id] of ids) {
    const down = page.wire.filter((x) => x.dir === 'in' && isPresence(x) && x.frame.header?.action === 'shutdown' && x.frame.control.subsession_id === id);
    assert.deepEqual(down.map((d) => d.frame.header.reason), [], `${page.identity}: the subscription to ${who} was never ended by the gateway`);
  }
  return ids;
}

e2e('three pages watch each other in the contact list and see each other available', async () => {
  const { alice, bob, carol } = pages;
  assert.deepEqual([alice.identity, bob.identity, carol.identity], ['alice', 'bob', 'carol']);
  for (const p of [alice, bob, carol]) {
    for (const q of [alice, bob, carol]) if (p !== q) await watch(p, q.identity);
  }
  for (const p of [alice, bob, carol]) {
    for (const q of [alice, bob, carol]) if (p !== q) await waitContact(p, q.identity, 'open', 'available');
  }
  // On the wire: 200 with the configured expiry, then at once a notify with the state.
  for (const p of [alice, bob, carol]) {
    for (const q of [alice, bob, carol]) {
      if (p === q) continue;
      const id = subsessionOf(p, q.identity);
      const start = startsOn(p, id)[0];
      const resp = await waitWire(p, (x) => x.dir === 'in' && x.frame.control.correlation_id === start.frame.control.correlation_id, { message: 'the start response' });
      assert.equal(resp.frame.control.type, 'response');
      assert.equal(resp.frame.header.response_code, 200);
      assert.equal(resp.frame.header.expiry, EXPIRY);
      const next = p.wire.slice(p.wire.indexOf(resp) + 1).find((x) => x.dir === 'in' && x.frame.control.subsession_id === id);
      assert.equal(next?.frame.header.action, 'notify', 'a notify follows the 200');
      assert.equal(next.frame.payload.presentity, q.identity);
      assert.equal(next.frame.payload.status, 'open');
    }
  }
});

e2e('a status and a note published on one page show on its watchers', async () => {
  const { alice, bob, carol } = pages;
  const mark = alice.wire.length;
  await publish(bob, 'busy', '');
  await waitContact(alice, 'bob', 'busy', 'busy');
  await waitContact(carol, 'bob', 'busy', 'busy');
  await publish(bob, 'busy', 'in a meeting');
  await waitContact(alice, 'bob', 'busy', 'busy · in a meeting');
  await waitContact(carol, 'bob', 'busy', 'busy · in a meeting');
  const n = notifiesAbout(alice, 'bob', mark).at(-1).frame;
  assert.deepEqual(n.payload, { presentity: 'bob', status: 'open', activity: 'busy', note: 'in a meeting' });
  assert.equal(n.control.type, 'message');
  await publish(bob, 'away', 'back at 3');
  await waitContact(alice, 'bob', 'away', 'away · back at 3');
  await waitContact(carol, 'bob', 'away', 'away · back at 3');
  // Offline by choice: status closed, while the session goes on.
  await publish(carol, 'offline', '');
  await waitContact(alice, 'carol', 'closed', 'offline');
  await waitContact(bob, 'carol', 'closed', 'offline');
  await publish(carol, 'available', '');
  await publish(bob, 'available', '');
  await waitContact(alice, 'carol', 'open', 'available');
  await waitContact(alice, 'bob', 'open', 'available');
  await waitContact(carol, 'bob', 'open', 'available');
});

e2e('subscriptions are refreshed on their subsession before they expire, and stay alive', async () => {
  const { alice, bob } = pages;
  const id = subsessionOf(alice, 'bob');
  const before = startsOn(alice, id).length;
  // Two more refreshes, each answered 200 with the expiry (and a notify).
  for (let i = 1; i <= 2; i++) {
    await waitWire(alice, () => startsOn(alice, id).length >= before + i, { timeout: EXPIRY * 1000 + 10000, message: `refresh ${i}` });
    const r = startsOn(alice, id).at(-1);
    const resp = await waitWire(alice, (x) => x.dir === 'in' && x.frame.control.correlation_id === r.frame.control.correlation_id, { message: 'the refresh response' });
    assert.equal(resp.frame.header.response_code, 200);
    assert.equal(resp.frame.header.expiry, EXPIRY);
  }
  const starts = startsOn(alice, id);
  for (let i = 1; i < starts.length; i++) {
    const gap = starts[i].at - starts[i - 1].at;
    assert.ok(gap < EXPIRY * 1000, `refresh ${i} came ${gap} ms after the previous start (expiry ${EXPIRY} s)`);
  }
  // More than an expiry after the first subscribe the gateway still serves it.
  assert.ok(Date.now() - starts[0].at > EXPIRY * 1000);
  await publish(bob, 'available', 'refreshed');
  await waitContact(alice, 'bob', 'open', 'available · refreshed');
  assertSingleSubscriptions(alice, ['bob', 'carol']);
});

e2e('a resume keeps the subscriptions: no new subscribe, notifies on the same subsessions', async () => {
  const { alice, bob, carol } = pages;
  const ids = assertSingleSubscriptions(alice, ['bob', 'carol']);
  const mark = await connMark(alice);
  const wireMark = alice.wire.length;
  // The socket drops (not a logout): the SDK reconnects and resumes the session.
  await alice.evaluate(() => window.softphone.session._ws.close(4002, 'test: socket lost'));
  await waitConnSeen(alice, 'reconnecting', mark);
  await waitConnSeen(alice, 'resumed', mark, 30000);
  await publish(bob, 'busy', 'after resume');
  await waitContact(alice, 'bob', 'busy', 'busy · after resume');
  await publish(carol, 'away', 'after resume');
  await waitContact(alice, 'carol', 'away', 'away · after resume');
  assert.deepEqual(assertSingleSubscriptions(alice, ['bob', 'carol']), ids);
  const after = alice.wire.slice(wireMark).filter((x) => x.dir === 'out' && isPresence(x) && x.frame.header?.action === 'start');
  for (const s of after) assert.ok([...ids.values()].includes(s.frame.control.subsession_id), 'only refreshes after the resume');
  // The watchers never saw alice go offline: the session lived on.
  for (const p of [bob, carol]) {
    const offline = notifiesAbout(p, 'alice').filter((x) => x.frame.payload.status !== 'open');
    assert.deepEqual(offline.map((x) => x.frame.payload), [], `${p.identity} saw no closed alice`);
  }
});

e2e('a page reload keeps the contacts and subscriptions: same subsessions, refreshes on schedule', async () => {
  const { alice, bob, carol } = pages;
  const ids = assertSingleSubscriptions(alice, ['bob', 'carol']);
  const lastStart = startsOn(alice, ids.get('bob')).at(-1);
  const wireMark = alice.wire.length;
  await alice.reload();
  await waitConn(alice, /^resumed$/);
  assert.deepEqual(await alice.evaluate(() => window.softphone.connHistory), ['connecting', 'resumed']);
  // The contact list comes back with the last states.
  await waitContact(alice, 'bob', 'busy', 'busy · after resume');
  await waitContact(alice, 'carol', 'away', 'away · after resume');
  assert.equal(await alice.locator('#presence-list li').count(), 2);
  await publish(bob, 'available', 'after reload');
  await waitContact(alice, 'bob', 'open', 'available · after reload');
  // The next refresh of the restored subscription keeps to the schedule of the last one.
  const next = await waitWire(alice, (x) => x.dir === 'out' && isPresence(x) && x.frame.header?.action === 'start' && x.frame.control.subsession_id === ids.get('bob') && x.at > lastStart.at, {
    from: wireMark,
    timeout: EXPIRY * 1000 + 10000,
    message: 'a refresh after the reload',
  });
  assert.ok(next.at - lastStart.at < EXPIRY * 1000, `refreshed ${next.at - lastStart.at} ms after the last start (expiry ${EXPIRY} s)`);
  await publish(carol, 'available', 'after reload');
  await waitContact(alice, 'carol', 'open', 'available · after reload');
  assert.deepEqual(assertSingleSubscriptions(alice, ['bob', 'carol']), ids);
  for (const p of [bob, carol]) {
    const offline = notifiesAbout(p, 'alice').filter((x) => x.frame.payload.status !== 'open');
    assert.deepEqual(offline.map((x) => x.frame.payload), [], `${p.identity} saw no closed alice across the reload`);
  }
  // The status chosen before the reload is kept (and republished unchanged).
  await publish(alice, 'busy', 'reloaded');
  await waitContact(bob, 'alice', 'busy', 'busy · reloaded');
  await alice.reload();
  await waitConn(alice, /^resumed$/);
  assert.equal(await alice.inputValue('#my-status'), 'busy');
  assert.equal(await alice.inputValue('#my-note'), 'reloaded');
  await alice.locator('#note-form[data-published]').waitFor({ state: 'attached' });
  await waitContact(carol, 'alice', 'busy', 'busy · reloaded');
  await publish(alice, 'available', '');
  await waitContact(bob, 'alice', 'open', 'available');
});

e2e('signing out (close 1000) shows the user offline on the watchers at once', async () => {
  const { alice, bob, carol } = pages;
  await waitContact(alice, 'carol', 'open', 'available · after reload');
  await carol.evaluate(() => {
    window.__closeCode = null;
    window.softphone.session._ws.addEventListener('close', (e) => (window.__closeCode = e.code));
  });
  const t0 = Date.now();
  await carol.click('#signout-btn');
  await carol.locator('#signin').waitFor({ state: 'visible' });
  // Well within the resume timeout: the logout ended the session at once.
  const within = (RESUME_TIMEOUT - 3) * 1000;
  await waitContact(alice, 'carol', 'closed', 'offline', within);
  await waitContact(bob, 'carol', 'closed', 'offline', within);
  assert.ok(Date.now() - t0 < RESUME_TIMEOUT * 1000);
  assert.equal(await carol.evaluate(() => window.__closeCode), 1000);
  // Signing in again: open again for the watchers, who kept their subscriptions.
  await carol.fill('#name', 'carol');
  await carol.click('#signin-btn');
  await waitConn(carol, /^connected$/);
  await waitContact(alice, 'carol', 'open', 'available');
  await waitContact(bob, 'carol', 'open', 'available');
  assertSingleSubscriptions(alice, ['bob', 'carol']);
});

e2e('a tab closed without signing out shows offline only after the resume timeout', async () => {
  const { alice, bob, carol } = pages;
  await waitContact(alice, 'carol', 'open', 'available');
  const t0 = Date.now();
  await carol.close();
  await waitContact(alice, 'carol', 'closed', 'offline', RESUME_TIMEOUT * 1000 + 15000);
  const took = Date.now() - t0;
  assert.ok(took >= (RESUME_TIMEOUT - 1) * 1000, `offline after ${took} ms, before the ${RESUME_TIMEOUT} s resume timeout`);
  await waitContact(bob, 'carol', 'closed', 'offline');
  delete pages.carol;
});

e2e('without a voicemail service the indicator says so (message_notification 404)', async () => {
  const { alice } = pages;
  await alice.locator('#vm[data-waiting="none"]').waitFor({ state: 'visible' });
  assert.equal((await alice.textContent('#vm-text')).trim(), 'No voicemail');
  assert.match(await alice.getAttribute('#vm', 'title'), /^No voicemail service \(404 no voicemail service\)$/);
  // On the wire: the start for the own mailbox, answered error 404.
  const start = alice.wire.find((x) => x.dir === 'out' && x.frame.control.package_type === 'message_notification' && x.frame.header.action === 'start');
  // The own mailbox: the identity, which the gateway maps to a SIP URI.
  assert.equal(start.frame.header.target, 'alice');
  const err = await waitWire(alice, (x) => x.dir === 'in' && x.frame.control.correlation_id === start.frame.control.correlation_id && x.frame.control.package_type === 'message_notification', { message: 'the voicemail answer' });
  assert.equal(err.frame.control.type, 'error');
  assert.equal(err.frame.header.error_code, 404);
  assert.equal(err.frame.header.reason, 'no voicemail service');
  await waitConn(alice, /^(connected|resumed)$/);
});

e2e('the mailbox query parameter picks the voicemail box the indicator watches', async () => {
  const mailbox = 'sip:vm-dave@example.com';
  const dave = (pages.dave = await openPhone(browser, gw, 'dave', { query: `mailbox=${encodeURIComponent(mailbox)}&ping=1000&pingPeriod=4000` }));
  await dave.locator('#vm[data-waiting="none"]').waitFor({ state: 'visible' });
  const starts = dave.wire.filter((x) => x.dir === 'out' && x.frame.control.package_type === 'message_notification' && x.frame.header.action === 'start');
  assert.deepEqual(starts.map((s) => s.frame.header.target), [mailbox]);
  const err = await waitWire(dave, (x) => x.dir === 'in' && x.frame.control.correlation_id === starts[0].frame.control.correlation_id, { message: 'the voicemail answer' });
  assert.equal(err.frame.header.error_code, 404);
  await dave.click('#signout-btn');
  await dave.locator('#signin').waitFor({ state: 'visible' });
  await dave.close();
  delete pages.dave;
});
