// Browser test: a single gateway restarted on its data directory during a
// call (issue 13). jsonrtcd keeps its sessions and calls in its embedded
// NATS store; it is killed with SIGKILL (a crash, nothing written at the
// end), then in a second call stopped with SIGTERM, and started again on
// the same data directory and port. Both pages
// resume their sessions, the call card stays with audio flowing and a
// re-offer passes, the call then ends by a plain hang-up; the contacts
// stay watched (the session records keep their presence watches).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { phones, waitConnSeen, connMark, waitCall, audioFlows, answeredCall, printOnFailure, waitContact, watchContact, waitIdle } from './harness.mjs';

const f = phones(['alice', 'bob'], { config: 'store:\n  backend: nats\n' });

/**
 * What the page's SDK says of its session and call, and every call end
 * and failed resume it heard since watchEnds: a restart that loses the
 * session or the call shows here as well as on the card.
 */
function sessionView(page) {
  return page.evaluate(() => {
    const s = window.softphone;
    return { session: s.session.id, call: s.call?.id ?? null, callState: s.call?.state ?? null, ends: s.restartEnds, resumeFailed: s.restartResumeFailed };
  });
}

/** Starts counting the page's call ends and failed resumes (sessionView shows them). */
function watchEnds(page) {
  return page.evaluate(() => {
    const s = window.softphone;
    s.restartEnds = [];
    s.restartResumeFailed = 0;
    s.call.on('ended', ({ state, code, reason, by }) => s.restartEnds.push({ state, code: code ?? null, reason, by }));
    s.session.on('resumefailed', () => s.restartResumeFailed++);
  });
}

test('gateway killed and started on its data directory during a call: both pages resume, the call and its audio go on, the call ends by hang-up', async () => {
  const { gw, alice, bob } = f;
  await printOnFailure({ alice, bob }, gw, async () => {
    await watchContact(alice, bob.identity);
    await watchContact(bob, alice.identity);
    await callSurvives('SIGKILL');
  });
});

// The same with SIGTERM, as an operator restarts the gateway: its clean
// shutdown keeps the records of the calls between web sessions (before,
// it ended them toward both pages, while a kill kept them).
test('gateway stopped (SIGTERM) and started on its data directory during a call: the same', async () => {
  const { gw, alice, bob } = f;
  await printOnFailure({ alice, bob }, gw, () => callSurvives('SIGTERM'));
});

/**
 * A call between the pages, the gateway restarted by signal during it:
 * both pages resume their sessions, the call card stays with audio
 * flowing, a re-offer passes both ways, and a hang-up ends it cleanly.
 */
async function callSurvives(signal) {
  const { gw, alice, bob } = f;
  await answeredCall(alice, bob);
  await audioFlows(alice);
  await audioFlows(bob);
  for (const p of [alice, bob]) await watchEnds(p);
  const before = [await sessionView(alice), await sessionView(bob)];
  assert.ok(before[0].call && before[1].call, 'both pages have the call');

  const marks = [await connMark(alice), await connMark(bob)];
  await gw.restart(signal);
  // Each page saw its socket go and resumed its session (not
  // "connected": that would be a new session).
  for (const [i, p] of [alice, bob].entries()) {
    await waitConnSeen(p, 'reconnecting', marks[i]);
    await waitConnSeen(p, 'resumed', marks[i], 30000);
  }
  for (const [i, p] of [alice, bob].entries()) {
    const now = await sessionView(p);
    assert.equal(now.session, before[i].session, `${p.identity}: the same session`);
    assert.equal(now.call, before[i].call, `${p.identity}: the same call`);
    assert.equal(now.callState, 'established');
    assert.deepEqual(now.ends, [], `${p.identity}: no call ended`);
    assert.equal(now.resumeFailed, 0, `${p.identity}: no failed resume`);
    // The call card stays, with no notice of a lost call.
    await waitCall(p, 'state', 'established');
    assert.equal(await p.isHidden('#call-notice'), true, `${p.identity}: no call notice`);
    // Audio flows on after the restart (inbound RTP grows).
    await audioFlows(p);
  }

  // The call goes on through the restarted gateway, not only between
  // the browsers: a re-offer both ways (hold, resume) passes. The media
  // is peer to peer, so the checks above also hold when the gateway
  // lost the call and said nothing (main before the call records):
  // there the hold failed.
  await bob.click('#hold-btn');
  await waitCall(bob, 'held', 'true');
  await waitCall(alice, 'remoteHeld', 'true');
  await bob.click('#hold-btn');
  await waitCall(bob, 'held', 'false');
  await waitCall(alice, 'remoteHeld', 'false');
  await audioFlows(alice);

  // The call ends cleanly from one side: both cards say it ended, no
  // code (a hang-up, not a failure), and the SDKs say who hung up.
  await alice.click('#hangup-btn');
  for (const p of [alice, bob]) {
    await waitIdle(p);
    assert.equal(await p.getAttribute('#call-status', 'data-state'), 'ended');
    assert.equal((await p.textContent('#call-status')).trim(), 'call ended');
    assert.equal(await p.isHidden('#call-notice'), true, `${p.identity}: no call notice`);
  }
  assert.deepEqual((await sessionView(alice)).ends, [{ state: 'ended', code: null, reason: 'hung up', by: 'local' }]);
  assert.deepEqual((await sessionView(bob)).ends, [{ state: 'ended', code: null, reason: 'remote hang-up', by: 'remote' }]);
}

// The contacts each page watched before the restart stay watched: states
// published after it reach the watcher. The session records keep their
// watches of web presentities, made again at the resume with no word to
// the SDK, which holds its subscription as active (docs/protocol.md §4.6).
test('contacts watched before the restart stay watched', async () => {
  const { gw, alice, bob } = f;
  await printOnFailure({ alice, bob }, gw, async () => {
    await bob.fill('#my-note', 'after the restart');
    await bob.selectOption('#my-status', 'busy');
    await waitContact(alice, bob.identity, 'busy', 'busy · after the restart');
    await alice.selectOption('#my-status', 'away');
    await waitContact(bob, alice.identity, 'away', 'away');
  });
});
