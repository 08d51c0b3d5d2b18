// Browser tests of the demo page as a phone: call waiting (several calls
// per session, hold and switch), tones, devices and call quality, history
// and contacts, the keyboard and an accessibility check of each state.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { startGateway, launchBrowser, openPhone, waitCall, waitConn, audioFlows, poll, CHROMIUM } from './harness.mjs';

let gw;
let browser;
let alice;
let bob;
let carol;

before(async () => {
  gw = await startGateway();
  browser = await launchBrowser(gw);
  alice = await openPhone(browser, gw, 'alice');
  bob = await openPhone(browser, gw, 'bob');
  carol = await openPhone(browser, gw, 'carol');
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

afterEach(async () => {
  // Leave no call behind for the next test.
  for (const p of [alice, bob, carol]) {
    if (!p || p.isClosed()) continue;
    await p.evaluate(() => {
      for (const c of window.softphone.calls) c.end();
      window.softphone.incoming?.decline();
    }).catch(() => {});
    await p.locator('#incall').waitFor({ state: 'hidden' }).catch(() => {});
    await p.locator('#incoming').waitFor({ state: 'hidden' }).catch(() => {});
  }
});

/** A test that prints the pages' consoles and the gateway's log when it fails. */
function e2e(name, fn) {
  test(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      for (const [n, p] of [['alice', alice], ['bob', bob], ['carol', carol]]) {
        console.log(`--- ${n} console\n` + (p?.consoleLines ?? []).slice(-30).join('\n'));
      }
      console.log('--- jsonrtcd\n' + gw.logs.slice(-60).join('\n'));
      throw err;
    }
  });
}

/** caller dials callee, who accepts in the incoming dialog. */
async function establishCall(caller, callee) {
  await dial(caller, callee);
  await callee.click('#accept-btn');
  await waitCall(caller, 'state', 'established');
  await waitCall(callee, 'state', 'established');
}

/** caller dials callee and waits until it rings there. */
async function dial(caller, callee) {
  await caller.fill('#address', callee.identity);
  await caller.click('#call-btn');
  await callee.locator('#incoming').waitFor({ state: 'visible' });
  await waitCall(caller, 'state', 'alerting');
}

async function waitIdle(page) {
  await page.locator('#incall').waitFor({ state: 'hidden' });
  await page.locator('#dialer').waitFor({ state: 'visible' });
}

/** The call-list row of the call with peer (a call not on the card). */
const row = (page, peer, attrs = '') => page.locator(`#call-list li[data-peer="${peer}"]${attrs}`);

/** Places a second call to bob while he talks to alice: it rings as call waiting. */
async function waitingCall() {
  await establishCall(alice, bob);
  await carol.fill('#address', bob.identity);
  await carol.click('#call-btn');
  await bob.locator('#incoming[data-waiting="true"]').waitFor({ state: 'visible' });
  await waitCall(carol, 'state', 'alerting');
  assert.equal((await bob.textContent('#incoming-title')).trim(), 'Call waiting: call');
  assert.equal((await bob.textContent('#incoming-from')).trim(), carol.identity);
  assert.equal((await bob.textContent('#accept-btn')).trim(), 'Hold & accept');
}

e2e('call waiting: hold and accept a second call, switch between the two, end either; the held one stays held', async () => {
  await waitingCall();
  await bob.click('#accept-btn');
  // alice's call is held and listed; carol's is on the card.
  await waitCall(bob, 'state', 'established');
  await waitCall(carol, 'state', 'established');
  await row(bob, alice.identity, '[data-held="true"]').waitFor();
  assert.equal((await bob.textContent('#call-peer')).trim(), carol.identity);
  await waitCall(alice, 'remoteHeld', 'true');
  await audioFlows(carol);

  // Switch: carol goes on hold, alice comes back.
  await row(bob, alice.identity).locator('button.switch').click();
  await bob.waitForFunction((p) => document.getElementById('call-peer').textContent === p, alice.identity, { polling: 100 });
  await waitCall(bob, 'held', 'false');
  await waitCall(alice, 'remoteHeld', 'false');
  await waitCall(carol, 'remoteHeld', 'true');
  await row(bob, carol.identity, '[data-held="true"]').waitFor();
  await audioFlows(bob);

  // And back to carol.
  await row(bob, carol.identity).locator('button.switch').click();
  await waitCall(carol, 'remoteHeld', 'false');
  await waitCall(alice, 'remoteHeld', 'true');

  // Ending the call on the card brings the held one back to the card, still held.
  await bob.click('#hangup-btn');
  await waitIdle(carol);
  await bob.waitForFunction((p) => document.getElementById('call-peer').textContent === p, alice.identity, { polling: 100 });
  await waitCall(bob, 'held', 'true');
  assert.equal(await bob.isHidden('#call-list'), true);
  await waitCall(alice, 'remoteHeld', 'true');
  await bob.click('#hold-btn');
  await waitCall(alice, 'remoteHeld', 'false');
  await audioFlows(alice);
  await alice.click('#hangup-btn');
  await waitIdle(bob);
});

e2e('call waiting: the held call can be ended from the list', async () => {
  await waitingCall();
  await bob.click('#accept-btn');
  await row(bob, alice.identity, '[data-held="true"]').waitFor();
  await row(bob, alice.identity).locator('button.end').click();
  await waitIdle(alice);
  await row(bob, alice.identity).waitFor({ state: 'detached' });
  await waitCall(bob, 'state', 'established');
  assert.equal((await bob.textContent('#call-peer')).trim(), carol.identity);
  await carol.click('#hangup-btn');
  await waitIdle(bob);
});

e2e('call waiting: declining the second call leaves the first as it was', async () => {
  await waitingCall();
  await bob.click('#decline-btn');
  await carol.locator('#call-notice', { hasText: 'bob declined' }).waitFor();
  await waitCall(bob, 'held', 'false');
  await waitCall(alice, 'remoteHeld', 'false');
  assert.equal((await bob.textContent('#call-peer')).trim(), alice.identity);
  await audioFlows(bob);
});

/** Waits until page plays tone kind ('' for silence), and for a ringing tone, until it is heard. */
async function waitTone(page, kind) {
  await page.waitForFunction((k) => (document.documentElement.dataset.tone ?? '') === k && window.softphone.tones.kind === k, kind, { polling: 100 });
  if (kind) await page.waitForFunction(() => window.softphone.tones.level() > 0.005, null, { polling: 50, timeout: 10000 });
}

e2e('tones: the callee rings and the caller hears ringback until the answer; a waiting call beeps; decline and cancel stop them', async () => {
  await dial(alice, bob);
  await waitTone(bob, 'ring');
  await waitTone(alice, 'ringback');
  await bob.click('#accept-btn');
  await waitCall(alice, 'state', 'established');
  await waitTone(bob, '');
  await waitTone(alice, '');

  // A second call: the softer call-waiting beep, not the ring; declining it stops it.
  await carol.fill('#address', bob.identity);
  await carol.click('#call-btn');
  await bob.locator('#incoming[data-waiting="true"]').waitFor({ state: 'visible' });
  await waitTone(bob, 'waiting');
  await waitTone(carol, 'ringback');
  await bob.click('#decline-btn');
  await waitTone(bob, '');
  await waitTone(carol, '');
  await alice.click('#hangup-btn');
  await waitIdle(bob);

  // The caller gives up: the callee's ring stops with the dialog.
  await dial(carol, bob);
  await waitTone(bob, 'ring');
  await carol.click('#hangup-btn');
  await bob.locator('#incoming').waitFor({ state: 'hidden' });
  await waitTone(bob, '');
  await waitTone(carol, '');
});

e2e('a call while the tab is hidden: the title changes and a notification shows; both go when it is answered', async () => {
  // The tab is "hidden", and Notification records what the page shows.
  await bob.evaluate(() => {
    Object.defineProperty(document, 'hidden', { value: true, configurable: true });
    window.__notes = [];
    window.Notification = class {
      static permission = 'granted';
      constructor(title, opts) {
        this.title = title;
        this.opts = opts;
        this.closed = false;
        window.__notes.push(this);
      }
      close() {
        this.closed = true;
      }
    };
  });
  try {
    await dial(alice, bob);
    assert.equal(await bob.title(), `☎ ${alice.identity} is calling`);
    const note = await bob.evaluate(() => window.__notes.map((n) => ({ title: n.title, body: n.opts.body, closed: n.closed })));
    assert.deepEqual(note, [{ title: 'Incoming call', body: `${alice.identity} is calling`, closed: false }]);
    await bob.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    assert.equal(await bob.title(), 'jsonrtc softphone');
    assert.equal(await bob.evaluate(() => window.__notes[0].closed), true);
  } finally {
    await bob.evaluate(() => delete document.hidden);
  }
});

/** Waits until the meter id reads more than a whisper. */
const meterMoves = (page, id) => page.waitForFunction((x) => document.getElementById(x).value > 0.01, id, { polling: 50, timeout: 15000 });

e2e('devices: listed and remembered; a microphone switched mid-call goes to the other side; meters move; call quality shows', async () => {
  await bob.click('#devices summary');
  await bob.waitForFunction(() => [...document.querySelectorAll('#mic-select option')].some((o) => o.textContent === 'Fake Audio Input 1'), null, { polling: 100 });
  const labels = (sel) => bob.evaluate((s) => [...document.querySelectorAll(`${s} option`)].map((o) => o.textContent), sel);
  assert.deepEqual(await labels('#mic-select'), ['Default', 'Fake Audio Input 1', 'Fake Audio Input 2']);
  assert.deepEqual(await labels('#cam-select'), ['Default', 'fake_device_0']);
  assert.deepEqual(await labels('#speaker-select'), ['Default', 'Fake Audio Output 1', 'Fake Audio Output 2']);
  await meterMoves(bob, 'device-level');
  try {
    await establishCall(alice, bob);
    await meterMoves(bob, 'mic-level');
    await meterMoves(bob, 'remote-level');
    // Live quality from getStats: a round trip, a loss figure and a bitrate.
    await bob.waitForFunction(() => {
      const d = document.getElementById('call-quality').dataset;
      return d.rtt !== '' && d.loss !== '' && d.jitter !== '' && Number(d.recv) > 0 && Number(d.send) > 0;
    }, null, { polling: 200, timeout: 15000 });
    assert.match(await bob.textContent('#call-quality'), /^Round trip \d+ ms · jitter \d+ ms · loss \d+\.\d % · ↑\d+ ↓\d+ kbit\/s$/);

    // A new microphone mid-call: the sender's track changes, with no re-offer, and audio still flows.
    const sdps = await bob.evaluate(() => window.softphone.call.peerConnection.localDescription.sdp);
    await bob.selectOption('#mic-select', { label: 'Fake Audio Input 1' });
    await bob.waitForFunction(() => window.softphone.call.peerConnection.getSenders().find((s) => s.track?.kind === 'audio')?.track.label === 'Fake Audio Input 1', null, { polling: 100 });
    assert.equal(await bob.evaluate(() => window.softphone.call.localStream.getAudioTracks().map((t) => t.label).join()), 'Fake Audio Input 1');
    assert.equal(await bob.evaluate(() => window.softphone.call.peerConnection.localDescription.sdp), sdps);
    await audioFlows(alice);
    await meterMoves(bob, 'mic-level');

    // The speaker: the remote audio element plays on the chosen output.
    await bob.selectOption('#speaker-select', { label: 'Fake Audio Output 2' });
    const out = await bob.inputValue('#speaker-select');
    await bob.waitForFunction((id) => document.getElementById('remote-audio').sinkId === id, out, { polling: 100 });

    // Remembered across a reload of the page's settings.
    const saved = await bob.evaluate(() => JSON.parse(localStorage.getItem('softphone.devices')));
    assert.equal(saved.audiooutput, out);
    assert.equal(saved.audioinput, await bob.inputValue('#mic-select'));
    await alice.click('#hangup-btn');
    await waitIdle(bob);
  } finally {
    await bob.evaluate(() => localStorage.removeItem('softphone.devices'));
    await bob.click('#devices summary');
  }
});

e2e('devices: before the microphone is granted the lists hold only Default; once granted, the devices by name', async () => {
  // A browser that asks before the page may use the microphone (no
  // fake prompt that grants it), with the same fake devices.
  const other = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--use-fake-device-for-media-stream', '--no-sandbox', '--disable-gpu'] });
  try {
    const context = await other.newContext();
    const page = await context.newPage();
    await page.goto(`${gw.url}/`);
    assert.equal(await page.evaluate(async () => (await navigator.permissions.query({ name: 'microphone' })).state), 'prompt');
    await page.fill('#name', 'dave');
    await page.click('#signin-btn');
    await waitConn(page, /^(connected|resumed)$/);
    const labels = () => page.evaluate(() => [...document.querySelectorAll('#mic-select option')].map((o) => o.textContent));
    // The browser names no device (nor gives its id) before the grant.
    await page.waitForFunction(() => window.softphone.connHistory.length > 0);
    assert.deepEqual(await labels(), ['Default']);
    // Granted outside the page's own paths (a call, the panel's meter):
    // the site's settings, or another tab's prompt.
    await context.grantPermissions(['microphone', 'camera'], { origin: gw.url });
    await poll(labels, (l) => l[1] === 'Fake Audio Input 1', { message: 'the devices\' names' });
    assert.deepEqual(await labels(), ['Default', 'Fake Audio Input 1', 'Fake Audio Input 2']);
    await page.evaluate(() => window.softphone.session?.close());
  } finally {
    await other.close();
  }
});

/** The newest n history entries of page, as shown. */
const history = (page, n) =>
  page.evaluate((k) => [...document.querySelectorAll('#history-list li')].slice(0, k).map((li) => ({ peer: li.dataset.peer, direction: li.dataset.direction, outcome: li.dataset.outcome })), n);

e2e('history: placed, received, declined, missed and answered calls, with a missed-call notice; bounded', async () => {
  await bob.evaluate(() => {
    localStorage.removeItem('softphone.bob.history');
    localStorage.removeItem('softphone.bob.missed');
  });
  // Declined by bob.
  await dial(alice, bob);
  await bob.click('#decline-btn');
  await waitIdle(alice);
  // Missed: alice gives up.
  await dial(alice, bob);
  await alice.click('#hangup-btn');
  await bob.locator('#incoming').waitFor({ state: 'hidden' });
  await bob.locator('#missed-badge', { hasText: '1 missed' }).waitFor();
  // Answered.
  await establishCall(alice, bob);
  await bob.waitForFunction(() => window.softphone.call?.duration >= 1, null, { polling: 100 });
  await bob.click('#hangup-btn');
  await waitIdle(alice);
  await bob.locator('#history-list li[data-outcome="answered"]').first().waitFor({ state: 'attached' });
  assert.deepEqual(await history(bob, 3), [
    { peer: 'alice', direction: 'in', outcome: 'answered' },
    { peer: 'alice', direction: 'in', outcome: 'missed' },
    { peer: 'alice', direction: 'in', outcome: 'declined' },
  ]);
  assert.deepEqual(await history(alice, 3), [
    { peer: 'bob', direction: 'out', outcome: 'answered' },
    { peer: 'bob', direction: 'out', outcome: 'cancelled' },
    { peer: 'bob', direction: 'out', outcome: 'failed' },
  ]);
  assert.match(await alice.textContent('#history-list li:nth-child(3) .what'), /^placed · bob declined · /);
  assert.ok(Number(await bob.getAttribute('#history-list li:first-child', 'data-duration')) >= 1);
  // Opening the history is seeing the missed call.
  await bob.click('#history summary');
  await bob.locator('#missed-badge').waitFor({ state: 'hidden' });
  // Call back from the history.
  await bob.getByRole('button', { name: 'Call alice' }).first().click();
  await alice.locator('#incoming').waitFor({ state: 'visible' });
  await alice.click('#decline-btn');
  await waitIdle(bob);
  await bob.click('#history summary');
  // Bounded: the oldest go.
  const n = await bob.evaluate(() => {
    const h = JSON.parse(localStorage.getItem('softphone.bob.history'));
    localStorage.setItem('softphone.bob.history', JSON.stringify(Array.from({ length: 80 }, () => h[0])));
    return h.length;
  });
  assert.equal(n, 4);
  await dial(alice, bob);
  await bob.click('#decline-btn');
  await waitIdle(alice);
  await bob.locator('#history-list li').nth(49).waitFor({ state: 'attached' });
  assert.equal(await bob.evaluate(() => JSON.parse(localStorage.getItem('softphone.bob.history')).length), 50);
});

/** Waits until page's contact who reads text. */
const contactSays = (page, who, text) =>
  page.waitForFunction(([w, x]) => document.querySelector(`#presence-list li[data-target="${w}"] .what`)?.textContent === x, [who, text], { polling: 100 });

e2e('presence: "on the phone" during a call, the chosen status after it', async () => {
  await carol.fill('#watch-to', alice.identity);
  await carol.click('#watch-btn');
  await contactSays(carol, 'alice', 'available');
  await establishCall(alice, bob);
  await contactSays(carol, 'alice', 'on-the-phone');
  await carol.locator('#presence-list li[data-target="alice"][data-status="busy"]').waitFor();
  // A reload mid-call: the restored call keeps the status, every publish says so.
  const mark = alice.wire.length;
  await alice.reload();
  await waitConn(alice, /^resumed$/);
  await waitCall(alice, 'state', 'established');
  const publishes = () => alice.wire.slice(mark).filter((x) => x.dir === 'out' && x.frame.header?.action === 'publish').map((x) => x.frame.payload.activity);
  await poll(publishes, (p) => p.length > 0, { message: 'a publish after the reload' });
  assert.deepEqual([...new Set(publishes())], ['on-the-phone']);
  await contactSays(carol, 'alice', 'on-the-phone');
  await alice.click('#hangup-btn');
  await waitIdle(bob);
  await contactSays(carol, 'alice', 'available');
});

e2e('contacts are kept and watched again after a new session; chat threads per contact with times, kept', async () => {
  // carol watches alice (from the test before, or now) and chats with alice and bob.
  await carol.fill('#watch-to', bob.identity);
  await carol.click('#watch-btn');
  await contactSays(carol, 'bob', 'available');
  for (const [to, body] of [[alice, 'hi alice'], [bob, 'hi bob']]) {
    await carol.fill('#chat-to', to.identity);
    await carol.fill('#chat-input', body);
    await carol.click('#chat-send');
    await carol.locator('#chat-log li.out[data-delivered="true"]', { hasText: body }).waitFor();
  }
  await bob.fill('#chat-to', carol.identity);
  await bob.fill('#chat-input', 'hello carol');
  await bob.click('#chat-send');
  await carol.locator('#chat-log li.in', { hasText: 'hello carol' }).waitFor();
  // Per contact: alice's thread has none of bob's lines.
  await carol.fill('#chat-to', alice.identity);
  const thread = () => carol.evaluate(() => [...document.querySelectorAll('#chat-log li')].map((li) => `${li.className} ${li.childNodes[li.className === 'in' ? 1 : 0].textContent}`));
  assert.deepEqual((await thread()).slice(-1), ['out hi alice']);
  assert.ok(!(await thread()).some((l) => l.includes('bob')));
  assert.match(await carol.getAttribute('#chat-log li:last-child time', 'datetime'), /^\d{4}-\d\d-\d\dT/);

  // A new session: sign out, sign in again. The contacts come back and are watched anew.
  const starts = () => carol.wire.filter((x) => x.dir === 'out' && x.frame.control?.package_type === 'presence' && x.frame.header?.action === 'start').length;
  await carol.click('#signout-btn');
  await carol.locator('#signin').waitFor({ state: 'visible' });
  const before = starts();
  await carol.fill('#name', 'carol');
  await carol.click('#signin-btn');
  await carol.locator('#phone').waitFor({ state: 'visible' });
  await contactSays(carol, 'alice', 'available');
  await contactSays(carol, 'bob', 'available');
  assert.ok(starts() >= before + 2, 'new subscriptions');
  // The threads are kept, per contact.
  await carol.fill('#chat-to', bob.identity);
  await carol.locator('#chat-log li.in', { hasText: 'hello carol' }).waitFor();
  await carol.locator('#chat-log li.out', { hasText: 'hi bob' }).waitFor();
  // A message from a contact whose thread is not open: counted on the contact.
  await alice.fill('#chat-to', carol.identity);
  await alice.fill('#chat-input', 'are you there?');
  await alice.click('#chat-send');
  await carol.getByRole('button', { name: 'Chat with alice, 1 new' }).waitFor();
  await carol.getByRole('button', { name: 'Chat with alice, 1 new' }).click();
  await carol.locator('#chat-log li.in', { hasText: 'are you there?' }).waitFor();
  await carol.getByRole('button', { name: 'Chat with alice', exact: true }).waitFor();
});

e2e('a chat message still pending when the page reloads is marked failed, with a note, not left pending', async () => {
  await alice.fill('#chat-to', bob.identity);
  // The gateway's answer does not come before the reload.
  await alice.evaluate(() => {
    window.softphone.session.sendMessage = () => new Promise(() => {});
  });
  await alice.fill('#chat-input', 'lost in the reload');
  await alice.click('#chat-send');
  await alice.locator('#chat-log li.out.pending', { hasText: 'lost in the reload' }).waitFor();
  await alice.reload();
  await waitConn(alice, /^resumed$/);
  await alice.fill('#chat-to', bob.identity);
  await alice.locator('#chat-log li.out[data-failed="true"]', { hasText: 'lost in the reload' }).waitFor();
  await alice.locator('#chat-log li.system', { hasText: 'may not have reached bob' }).waitFor();
  assert.equal(await alice.locator('#chat-log li.pending').count(), 0);
  // A message sent now is delivered as usual.
  await alice.fill('#chat-input', 'after the reload');
  await alice.click('#chat-send');
  await alice.locator('#chat-log li.out[data-delivered="true"]', { hasText: 'after the reload' }).waitFor();
});

const focused = (page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);

e2e('keyboard: the incoming dialog takes the focus, keeps Tab inside, Escape declines and the focus goes back; digits send DTMF', async () => {
  await bob.focus('#watch-to');
  await dial(alice, bob);
  assert.equal(await focused(bob), 'incoming-box');
  assert.equal(await bob.getAttribute('#incoming-box', 'role'), 'alertdialog');
  await bob.keyboard.press('Tab');
  assert.equal(await focused(bob), 'decline-btn');
  await bob.keyboard.press('Tab');
  assert.equal(await focused(bob), 'accept-btn');
  await bob.keyboard.press('Tab');
  assert.equal(await focused(bob), 'decline-btn');
  await bob.keyboard.press('Shift+Tab');
  assert.equal(await focused(bob), 'accept-btn');
  await bob.keyboard.press('Escape');
  await alice.locator('#call-notice', { hasText: 'bob declined' }).waitFor();
  await bob.locator('#incoming').waitFor({ state: 'hidden' });
  assert.equal(await focused(bob), 'watch-to');

  // Accepted with the keyboard: the focus goes to the call card (the dialer it came from is hidden).
  await bob.evaluate(() => document.activeElement.blur());
  await dial(alice, bob);
  await bob.keyboard.press('Tab');
  await bob.keyboard.press('Tab');
  await bob.keyboard.press('Enter');
  await waitCall(alice, 'state', 'established');
  await waitCall(bob, 'state', 'established');
  assert.equal(await focused(bob), 'hangup-btn');

  // Digits typed on the page (not in a field) go out as DTMF.
  await alice.evaluate(() => document.activeElement.blur());
  for (const k of ['1', '2', '#']) await alice.keyboard.press(k);
  await bob.waitForFunction(() => document.getElementById('dtmf-received').textContent === '12#', null, { polling: 100 });
  assert.equal(await alice.textContent('#dtmf-sent'), '12#');
  // Not while typing in a field.
  await alice.fill('#transfer-to', '');
  await alice.focus('#transfer-to');
  await alice.keyboard.type('42');
  assert.equal(await alice.inputValue('#transfer-to'), '42');
  assert.equal(await alice.textContent('#dtmf-sent'), '12#');
  await alice.fill('#transfer-to', '');
  await alice.click('#hangup-btn');
  await waitIdle(bob);
});

// axe-core is evaluated in the page (the DevTools protocol is not bound by
// the page's Content-Security-Policy, which refuses inline scripts).
const axeSource = readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core on page: no serious or critical violation in state what.
 * And no sideways scrolling in it (the tabs are 390 px wide, a phone).
 */
async function axe(page, what) {
  const width = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, view: window.innerWidth }));
  assert.ok(width.scroll <= width.view, `${what}: the page is ${width.scroll} px wide in a ${width.view} px viewport`);
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(await axeSource);
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.impact} ${v.id} (${v.help}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
    [],
    `accessibility of the page ${what}`,
  );
}

e2e('accessibility (axe-core): no serious or critical violation in any state of the page', async () => {
  const page = await browser.context.newPage();
  try {
    await page.goto(`${gw.url}/`);
    await axe(page, 'signed out');
    await page.fill('#name', 'not a name');
    await page.click('#signin-btn');
    await page.locator('#banner').waitFor({ state: 'visible' });
    await axe(page, 'after a failed sign-in (banner)');
  } finally {
    await page.close();
  }
  await alice.fill('#watch-to', bob.identity);
  await alice.click('#watch-btn');
  await contactSays(alice, 'bob', 'available');
  await axe(alice, 'idle, with a contact');
  await alice.fill('#chat-to', bob.identity);
  await alice.fill('#chat-input', 'accessible?');
  await alice.click('#chat-send');
  await alice.locator('#chat-log li.out[data-delivered="true"]', { hasText: 'accessible?' }).waitFor();
  await axe(alice, 'chatting');
  await alice.click('#history summary');
  await alice.click('#devices summary');
  await alice.waitForFunction(() => document.querySelectorAll('#mic-select option').length > 1, null, { polling: 100 });
  await axe(alice, 'with the history and the devices open');
  await alice.click('#history summary');
  await alice.click('#devices summary');

  await dial(alice, bob);
  await axe(bob, 'ringing');
  await axe(alice, 'calling (ringback)');
  await bob.click('#accept-btn');
  await waitCall(alice, 'state', 'established');
  await alice.click('#dtmf-btn');
  await alice.fill('#transfer-to', carol.identity);
  await axe(alice, 'in a call, keypad open, a transfer target typed');
  await alice.fill('#transfer-to', '');
  await carol.fill('#address', bob.identity);
  await carol.click('#call-btn');
  await bob.locator('#incoming[data-waiting="true"]').waitFor({ state: 'visible' });
  await axe(bob, 'a call waiting');
  await bob.click('#accept-btn');
  await row(bob, alice.identity, '[data-held="true"]').waitFor();
  await axe(bob, 'two calls, one held');
  await alice.click('#hangup-btn');
  await carol.click('#hangup-btn');
  await waitIdle(bob);
  await alice.locator('#call-notice').waitFor({ state: 'hidden', timeout: 10000 }).catch(() => {});
  await axe(carol, 'after a call, with history');
});

e2e('SDK extension headers go through the gateway: on a call both ways and on a message', async () => {
  await bob.evaluate(() => {
    window.__hdr = {};
    window.softphone.session.once('incomingcall', (c) => {
      window.__hdr.start = c.remoteHeaders;
      c.accept({ headers: { 'x-agent': 7 } });
      window.__hdr.call = c;
    });
    window.softphone.session.once('message', (m) => (window.__hdr.message = m.headers));
  });
  // The SDK answers for bob: the page's dialog shows until the call ends.
  const remote = await alice.evaluate(async () => {
    const call = window.softphone.session.call('bob', { headers: { 'x-tenant': 'acme', 'x-priority': 2, 'x-vip': true } });
    await new Promise((resolve, reject) => {
      call.on('state', ({ state }) => state === 'established' && resolve());
      call.on('ended', reject);
    });
    const answer = call.remoteHeaders;
    await window.softphone.session.sendMessage('bob', 'with headers', { headers: { 'x-thread': 'T1' } });
    call.end();
    return answer;
  });
  assert.deepEqual(remote, { 'x-agent': 7 });
  const got = await bob.evaluate(() => ({ start: window.__hdr.start, message: window.__hdr.message }));
  assert.deepEqual(got, { start: { 'x-tenant': 'acme', 'x-priority': 2, 'x-vip': true }, message: { 'x-thread': 'T1' } });
  await bob.locator('#incoming').waitFor({ state: 'hidden' });
});
