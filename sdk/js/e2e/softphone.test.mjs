// Browser tests: two demo pages call each other through a real jsonrtcd.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, waitConn, waitConnSeen, connMark, waitCall, audioFlows, directions, poll } from './harness.mjs';

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

afterEach(async () => {
  // Leave no call behind for the next test.
  for (const p of [alice, bob]) {
    if (!p || p.isClosed()) continue;
    await p.evaluate(() => window.softphone.call?.end()).catch(() => {});
  }
});

/** A test that prints the pages' consoles and the gateway's log when it fails. */
function e2e(name, fn) {
  test(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      console.log('--- alice console\n' + (alice?.consoleLines ?? []).slice(-40).join('\n'));
      console.log('--- bob console\n' + (bob?.consoleLines ?? []).slice(-40).join('\n'));
      console.log('--- jsonrtcd\n' + gw.logs.slice(-60).join('\n'));
      throw err;
    }
  });
}

/** alice calls bob with the dial form; bob accepts in the incoming dialog. */
async function establishCall(caller, callee) {
  await caller.fill('#address', callee.identity);
  await caller.click('#call-btn');
  await callee.locator('#incoming').waitFor({ state: 'visible' });
  assert.equal((await callee.textContent('#incoming-from')).trim(), caller.identity);
  await waitCall(caller, 'state', 'alerting');
  await callee.click('#accept-btn');
  await waitCall(caller, 'state', 'established');
  await waitCall(callee, 'state', 'established');
}

async function waitIdle(page) {
  await page.locator('#incall').waitFor({ state: 'hidden' });
  await page.locator('#dialer').waitFor({ state: 'visible' });
}

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
