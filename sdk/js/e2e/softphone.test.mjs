// Browser tests: two demo pages call each other through a real jsonrtcd;
// what the page tells its user (why a call failed, why a sign-in failed or
// a session ended, that a token was ignored) and a layout that fits a
// phone and a laptop without sideways scrolling.
import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, establishCall, endCalls, e2eTest, waitIdle, framesDecoded, recordWire, waitConn, waitConnSeen, connMark, waitCall, audioFlows, directions, poll } from './harness.mjs';

let gw;
let browser;
let alice;
let bob;

before(async () => {
  gw = await startGateway();
  browser = await launchBrowser(gw);
  alice = await openPhone(browser, gw, 'alice');
  bob = await openPhone(browser, gw, 'bob');
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

afterEach(() => endCalls([alice, bob]));

/** A test that prints the pages' consoles and the gateway's log when it fails. */
const e2e = e2eTest(() => ({ gw, pages: { alice, bob } }));

e2e('a call between two pages: ICE connects and audio flows both ways; hang up ends both', async () => {
  await establishCall(alice, bob);
  await audioFlows(alice);
  await audioFlows(bob);
  await alice.waitForFunction(() => /^00:0[1-9]|^00:[1-5]\d/.test(document.getElementById('call-timer').textContent));
  await alice.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('hold and resume re-offer with sendonly/recvonly, then sendrecv', async () => {
  await establishCall(alice, bob);
  await audioFlows(alice);
  await alice.click('#hold-btn');
  await waitCall(alice, 'held', 'true');
  await waitCall(bob, 'remoteHeld', 'true');
  assert.deepEqual(await directions(alice), ['sendonly']);
  assert.deepEqual(await directions(bob), ['recvonly']);
  await audioFlows(bob); // alice still sends while holding
  await alice.click('#hold-btn');
  await waitCall(alice, 'held', 'false');
  await waitCall(bob, 'remoteHeld', 'false');
  assert.deepEqual(await directions(alice), ['sendrecv']);
  assert.deepEqual(await directions(bob), ['sendrecv']);
  await audioFlows(alice);
  await bob.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('DTMF from the in-call keypad reaches the other page', async () => {
  await establishCall(alice, bob);
  await alice.click('#dtmf-btn');
  for (const d of ['1', '2', '#']) await alice.click(`#dtmf-pad button[data-dtmf="${d}"]`);
  await bob.waitForFunction(() => document.getElementById('dtmf-received').textContent === '12#');
  assert.equal(await alice.textContent('#dtmf-sent'), '12#');
  await alice.click('#hangup-btn');
  await waitIdle(bob);
});

e2e('chat between the two pages', async () => {
  await alice.fill('#chat-to', bob.identity);
  await alice.fill('#chat-input', 'hello bob');
  await alice.click('#chat-send');
  await bob.locator('#chat-log li.in', { hasText: 'hello bob' }).waitFor();
  await alice.locator('#chat-log li.out[data-delivered="true"]', { hasText: 'hello bob' }).waitFor();
  assert.equal(await bob.inputValue('#chat-to'), alice.identity, 'reply address filled in');
  await bob.fill('#chat-input', 'hi alice');
  await bob.click('#chat-send');
  await alice.locator('#chat-log li.in', { hasText: 'hi alice' }).waitFor();
});

e2e('network loss during a call: the signaling resumes and the call still ends cleanly', async () => {
  await establishCall(alice, bob);
  await audioFlows(alice);
  // Alice's network goes away: her WebSocket goes silent, new ones fail.
  await alice.context().setOffline(true);
  const mark = await connMark(alice);
  await alice.evaluate(() => window.softphone.session._ws?.close(4002, 'test: network lost'));
  await waitConnSeen(alice, 'reconnecting', mark);
  // Bob chats meanwhile: the gateway keeps the frame for alice's session.
  await bob.fill('#chat-to', alice.identity);
  await bob.fill('#chat-input', 'while you were away');
  await bob.click('#chat-send');
  await alice.context().setOffline(false);
  await waitConn(alice, /^resumed$/, 30000);
  await alice.locator('#chat-log li.in', { hasText: 'while you were away' }).waitFor();
  await waitCall(alice, 'state', 'established');
  await audioFlows(alice);
  await alice.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('a silent link (no pongs) is detected by the keepalive and the session resumes', async () => {
  await establishCall(alice, bob);
  const mark = await connMark(alice);
  // Freeze alice's socket without closing it: nothing passes either way.
  await alice.evaluate(() => {
    const ws = window.softphone.session._ws;
    ws.send = () => {};
    ws.onmessage = null;
    window.__frozen = ws;
  });
  await waitConnSeen(alice, 'reconnecting', mark, 20000);
  await waitConnSeen(alice, 'resumed', mark, 30000);
  await bob.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('a page reload during a call resumes the session and the call', async () => {
  await establishCall(alice, bob);
  await audioFlows(bob);
  const oldPc = await bob.evaluate(() => {
    window.__oldPc = window.softphone.call.peerConnection;
    return true;
  });
  assert.ok(oldPc);
  await alice.reload();
  await waitConn(alice, /^resumed$/);
  assert.deepEqual(await alice.evaluate(() => window.softphone.connHistory), ['connecting', 'resumed']);
  await waitCall(alice, 'state', 'established');
  assert.equal((await alice.textContent('#call-peer')).trim(), bob.identity);
  // Alice re-offered on a new RTCPeerConnection; bob built a new one too.
  await poll(() => bob.evaluate(() => window.softphone.call?.peerConnection !== window.__oldPc), (x) => x, { message: 'a new peer connection on bob' });
  await audioFlows(alice);
  await audioFlows(bob);
  await bob.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('decline: the caller sees the call fail with 603', async () => {
  await alice.fill('#address', bob.identity);
  await alice.click('#call-btn');
  await bob.locator('#incoming').waitFor({ state: 'visible' });
  await bob.click('#decline-btn');
  await waitIdle(alice);
  await alice.locator('#events li', { hasText: 'call failed 603' }).waitFor({ state: 'attached' });
});

e2e('blind transfer: bob transfers alice to carol, who gets alice\'s call', async () => {
  const carol = await openPhone(browser, gw, 'carol');
  try {
    await establishCall(alice, bob);
    await bob.fill('#transfer-to', carol.identity);
    await bob.click('#transfer-btn');
    await waitIdle(bob);
    await carol.locator('#incoming').waitFor({ state: 'visible' });
    assert.equal((await carol.textContent('#incoming-from')).trim(), alice.identity);
    await carol.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    await waitCall(carol, 'state', 'established');
    assert.equal((await alice.textContent('#call-peer')).trim(), carol.identity);
    await audioFlows(carol);
    await carol.click('#hangup-btn');
    await waitIdle(alice);
  } finally {
    await carol.evaluate(() => window.softphone.session?.close()).catch(() => {});
    await carol.close();
  }
});

/** A fresh tab on the page, not signed in. */
async function blankPage(query = '') {
  const page = await browser.context.newPage();
  page.consoleLines = [];
  page.on('console', (m) => page.consoleLines.push(`${m.type()}: ${m.text()}`));
  recordWire(page);
  await page.goto(`${gw.url}/?${query}`);
  return page;
}

/** The notice that says why the caller's last call failed. */
async function waitNotice(page, text, code) {
  await page.waitForFunction(
    ([x, c]) => {
      const el = document.getElementById('call-notice');
      return !el.hidden && el.textContent === x && el.dataset.code === c;
    },
    [text, String(code)],
    { timeout: 15000, polling: 100 },
  );
}

/** alice calls bob, who declines with code: alice's page says why, in words. */
for (const [code, text] of [
  [486, 'bob is busy'],
  [603, 'bob declined'],
  [480, 'bob is unreachable'],
  [404, 'no such user'],
  [408, 'no answer'],
  [487, 'cancelled'],
  [503, 'service unavailable'],
]) {
  e2e(`a call declined with ${code} shows "${text}", and the code in the event log`, async () => {
    await alice.evaluate(() => document.getElementById('events').replaceChildren());
    await alice.fill('#address', bob.identity);
    await alice.click('#call-btn');
    await bob.locator('#incoming').waitFor({ state: 'visible' });
    await waitCall(alice, 'state', 'alerting');
    await bob.evaluate((c) => window.softphone.incoming.decline(c), code);
    await waitNotice(alice, text, code);
    assert.equal(await alice.isHidden('#incall'), true, 'the call card is gone');
    // 487 ends the call rather than failing it (the SDK's CallState).
    await alice.locator('#events li', { hasText: `call ${code === 487 ? 'ended' : 'failed'} ${code}` }).first().waitFor({ state: 'attached' });
    // The reason stays for a few seconds, then goes.
    if (code === 486) await alice.locator('#call-notice').waitFor({ state: 'hidden', timeout: 15000 });
  });
}

e2e('a call to a user who is not signed in says why', async () => {
  await alice.fill('#address', 'nobody-here');
  await alice.click('#call-btn');
  await alice.waitForFunction(() => !document.getElementById('call-notice').hidden, null, { timeout: 15000, polling: 100 });
  const { text, code } = await alice.evaluate(() => ({ text: document.getElementById('call-notice').textContent, code: document.getElementById('call-notice').dataset.code }));
  const want = { 404: 'no such user', 480: 'nobody-here is unreachable' }[code];
  assert.ok(want, `code ${code} is 404 or 480`);
  assert.equal(text, want);
});

e2e('a sign-in the gateway refuses shows a banner with what to do', async () => {
  const page = await blankPage();
  try {
    await page.fill('#name', 'not a name');
    await page.click('#signin-btn');
    await page.locator('#banner').waitFor({ state: 'visible' });
    assert.equal(await page.getAttribute('#banner', 'data-kind'), 'error');
    assert.match(await page.textContent('#banner-text'), /^Cannot sign in: 400 /);
    assert.match(await page.textContent('#banner-hint'), /name/);
    assert.equal(await page.isVisible('#signin'), true);
    // Dismissed, it goes.
    await page.click('#banner-close');
    await page.locator('#banner').waitFor({ state: 'hidden' });
  } finally {
    await page.close();
  }
});

e2e('a session that ends (its resume timed out) shows a banner with what to do', async () => {
  const page = await blankPage('ping=1000&pingPeriod=4000&reconnectTimeout=1500');
  const context = page.context();
  try {
    await page.fill('#name', 'dave');
    await page.click('#signin-btn');
    await waitConn(page, /^connected$/);
    const mark = await connMark(page);
    await context.setOffline(true);
    await page.evaluate(() => window.softphone.session._ws?.close(4002, 'test: network lost'));
    await waitConnSeen(page, 'reconnecting', mark);
    await page.locator('#banner').waitFor({ state: 'visible', timeout: 20000 });
    assert.equal(await page.textContent('#banner-text'), 'Signed out: 1002 reconnect timed out');
    assert.match(await page.textContent('#banner-hint'), /sign in again/);
    assert.equal(await page.isVisible('#signin'), true);
  } finally {
    await context.setOffline(false);
    await page.close();
  }
});

e2e('a token on an open-mode gateway: the page says it signed in as a guest', async () => {
  const page = await blankPage();
  try {
    await page.click('.tabs label:has(input[value="token"])');
    await page.fill('#token', 'junk');
    await page.click('#signin-btn');
    await waitConn(page, /^connected$/);
    const me = (await page.textContent('#me')).trim();
    assert.match(me, /^guest-/);
    await page.locator('#banner').waitFor({ state: 'visible' });
    assert.equal(await page.getAttribute('#banner', 'data-kind'), 'info');
    assert.equal(await page.textContent('#banner-text'), `This gateway runs in open mode: it ignored the token and signed you in as ${me}.`);
    await page.evaluate(() => window.softphone.session.close());
  } finally {
    await page.close();
  }
});

e2e('with no voicemail service the voicemail button is disabled, not a button that does nothing', async () => {
  await alice.locator('#vm[data-waiting="none"]').waitFor();
  assert.equal(await alice.isDisabled('#vm'), true);
});

/** Fails unless the page fits its viewport's width and Hang up is one line. */
async function checkLayout(page, what) {
  const m = await page.evaluate(() => {
    const lines = (id) => {
      const el = document.getElementById(id);
      if (!el.offsetParent) return null;
      const r = document.createRange();
      r.selectNodeContents(el);
      return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size;
    };
    return {
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      hangupLines: lines('hangup-btn'),
      holdLines: lines('hold-btn'),
      callLines: lines('call-btn'),
    };
  });
  const w = `${what} at ${m.innerWidth} px`;
  assert.ok(m.scrollWidth <= m.innerWidth, `${w}: the page is ${m.scrollWidth} px wide`);
  for (const k of ['hangupLines', 'holdLines', 'callLines']) {
    if (m[k] !== null) assert.equal(m[k], 1, `${w}: ${k}`);
  }
  return m;
}

e2e('no sideways scrolling at 390 and 1366 px: signed out, failed sign-in, idle, ringing, in call', async () => {
  const signedOut = await blankPage();
  try {
    for (const width of [390, 1366]) {
      for (const p of [signedOut, alice, bob]) await p.setViewportSize({ width, height: 844 });
      await checkLayout(signedOut, 'signed out');
      await checkLayout(alice, 'idle');
      await alice.fill('#address', bob.identity);
      await alice.click('#call-btn');
      await bob.locator('#incoming').waitFor({ state: 'visible' });
      await waitCall(alice, 'state', 'alerting');
      await checkLayout(alice, 'calling');
      await checkLayout(bob, 'ringing');
      await bob.click('#accept-btn');
      await waitCall(alice, 'state', 'established');
      await waitCall(bob, 'state', 'established');
      await alice.click('#dtmf-btn');
      const m = await checkLayout(alice, 'in call');
      assert.equal(m.hangupLines, 1, 'Hang up is measured in the call');
      await checkLayout(bob, 'in call');
      await alice.click('#hangup-btn');
      await bob.locator('#incall').waitFor({ state: 'hidden' });
      // A failed call's notice and the banner fit too.
      await alice.click('#call-btn');
      await bob.locator('#incoming').waitFor({ state: 'visible' });
      await waitCall(alice, 'state', 'alerting');
      await bob.evaluate(() => window.softphone.incoming.decline(486));
      await waitNotice(alice, 'bob is busy', 486);
      await checkLayout(alice, 'failed call');
      await signedOut.fill('#name', 'not a name');
      await signedOut.click('#signin-btn');
      await signedOut.locator('#banner').waitFor({ state: 'visible' });
      await checkLayout(signedOut, 'failed sign-in');
    }
  } finally {
    for (const p of [alice, bob]) await p.setViewportSize({ width: 390, height: 844 });
    await signedOut.close();
  }
});

e2e('web.ice_servers reach the page and its RTCPeerConnections', async () => {
  const stun = { urls: ['stun:127.0.0.1:3478'] };
  const turn = { urls: ['turn:127.0.0.1:3478?transport=udp'], username: 'u', credential: 'p' };
  const gw2 = await startGateway({
    config: `web:\n  ice_servers:\n    - urls: [${stun.urls[0]}]\n    - urls: ["${turn.urls[0]}"]\n      username: u\n      credential: p\n`,
  });
  // Tabs of the file's browser, on the second gateway's origin: a browser
  // of its own would only cost a launch.
  await browser.context.grantPermissions(['microphone', 'camera'], { origin: gw2.url });
  let erin;
  let frank;
  try {
    erin = await openPhone(browser, gw2, 'erin');
    frank = await openPhone(browser, gw2, 'frank');
    assert.deepEqual(await erin.evaluate(() => window.softphone.session.rtc.iceServers), [stun, turn]);
    await erin.fill('#address', frank.identity);
    await erin.click('#call-btn');
    await frank.locator('#incoming').waitFor({ state: 'visible' });
    const used = await erin.evaluate(() => window.softphone.call.peerConnection.getConfiguration().iceServers);
    assert.deepEqual(used.map((s) => s.urls.flat()), [stun.urls, turn.urls]);
    await erin.evaluate(() => window.softphone.call.end());
  } finally {
    for (const p of [erin, frank]) await p?.close();
    await gw2.stop();
  }
});

e2e('a video call: the incoming dialog says so, and video is decoded both ways', async () => {
  await alice.check('#video');
  try {
    await alice.fill('#address', bob.identity);
    await alice.click('#call-btn');
    await bob.locator('#incoming').waitFor({ state: 'visible' });
    assert.equal(await bob.textContent('#incoming-title'), 'Incoming video call');
    assert.deepEqual(await bob.evaluate(() => window.softphone.incoming.kinds), ['audio', 'video']);
    await bob.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    await waitCall(bob, 'state', 'established');
    for (const p of [alice, bob]) {
      await poll(() => framesDecoded(p), (n) => n > 0, { message: `video frames decoded on ${p.identity}` });
      assert.equal(await p.isVisible('#videos'), true);
    }
    await alice.click('#hangup-btn');
    await waitIdle(bob);
  } finally {
    await alice.uncheck('#video');
  }
});

e2e('an audio call: the incoming dialog says call, not video call', async () => {
  await alice.fill('#address', bob.identity);
  await alice.click('#call-btn');
  await bob.locator('#incoming').waitFor({ state: 'visible' });
  assert.equal(await bob.textContent('#incoming-title'), 'Incoming call');
  assert.deepEqual(await bob.evaluate(() => window.softphone.incoming.kinds), ['audio']);
  await bob.click('#decline-btn');
  await waitIdle(alice);
});

e2e('attended transfer: alice consults carol, then transfers bob to her: bob and carol talk, alice\'s calls end', async () => {
  const carol = await openPhone(browser, gw, 'carol');
  try {
    await establishCall(bob, alice);
    // Consult: bob goes on hold, carol is called and answers.
    await alice.fill('#transfer-to', carol.identity);
    await alice.click('#consult-btn');
    await carol.locator('#incoming').waitFor({ state: 'visible' });
    await carol.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    await waitCall(carol, 'state', 'established');
    await waitCall(bob, 'remoteHeld', 'true');
    assert.equal((await alice.textContent('#call-peer')).trim(), carol.identity);
    await audioFlows(carol);
    // Complete: bob's new call replaces carol's call with alice; carol's
    // page takes it without ringing.
    const from = carol.wire.length;
    await alice.locator('#complete-transfer-btn').waitFor({ state: 'visible' });
    await alice.click('#complete-transfer-btn');
    await waitIdle(alice);
    await poll(
      () => carol.evaluate(() => window.softphone.call?.remoteIdentity),
      (who) => who === bob.identity,
      { message: 'carol in a call with bob' },
    );
    await waitCall(carol, 'state', 'established');
    await waitCall(bob, 'state', 'established');
    assert.equal((await bob.textContent('#call-peer')).trim(), carol.identity);
    assert.equal((await carol.textContent('#call-peer')).trim(), bob.identity);
    assert.equal(await carol.locator('#incoming').isVisible(), false, 'no incoming dialog for the replacing call');
    const starts = carol.wire.slice(from).filter((w) => w.dir === 'in' && w.frame.header?.action === 'start' && w.frame.control.type === 'request');
    assert.equal(starts.length, 1);
    assert.ok(starts[0].frame.header.replaces, 'the start names the call it replaces');
    await audioFlows(carol);
    await audioFlows(bob);
    assert.equal(await carol.evaluate(() => window.softphone.calls.length), 1, 'carol\'s call with alice ended');
    await carol.click('#hangup-btn');
    await waitIdle(bob);
    await waitIdle(carol);
  } finally {
    await carol.evaluate(() => window.softphone.session?.close()).catch(() => {});
    await carol.close();
  }
});
