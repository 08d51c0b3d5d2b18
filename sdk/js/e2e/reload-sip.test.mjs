// Browser test: a page reloaded during a call with a SIP phone gets its
// media back. Kamailio is the registrar and proxy of example.com, jsonrtcd
// anchors the call's media in a real rtpengine, and baresip (PCMU, plain
// RTP) is the phone, sending a 440 Hz tone. After the reload the SDK's
// re-offer goes out as a re-INVITE through Kamailio, the phone answers it,
// and audio flows again both ways: the page's new RTCPeerConnection
// receives the phone's tone (getStats), and rtpengine receives the page's
// RTP again (its query, per side); then either side hangs up.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { openPhone, waitCall, waitConn, waitWire, audioFlows, poll } from './harness.mjs';
import { needTools } from './sip.mjs';
import { startPhoneRig, callPhone, inboundEnergy } from './media.mjs';

const DOMAIN = 'example.com';
const tools = needTools(['kamailio', 'rtpengine', 'baresip'], 'apt-get install kamailio rtpengine-daemon baresip-core');

const running = [];
after(async () => {
  for (const stop of running.reverse()) await stop();
});

/** Waits until rtpengine's call holds more than `than` packets from each of its two sides. */
function bothWays(engine, callId, than = {}) {
  return poll(
    () => engine.packets(callId),
    (p) => Object.keys(p).length === 2 && Object.entries(p).every(([tag, n]) => n > (than[tag] ?? 0) + 20),
    { timeout: 15000, message: `packets from both sides of ${callId} in rtpengine` },
  );
}

/**
 * Reloads page mid-call and checks the call comes back through the SIP
 * side: the re-offer (a start on the call's subsession) answered 200 by
 * the phone's answer to the re-INVITE, the same rtpengine call, the
 * page hearing the phone's tone on its new peer connection, and
 * rtpengine getting packets from both sides again.
 */
async function reloadWithPhone(page, phone, engine, callId) {
  const before = await bothWays(engine, callId);
  const reinvites = () => phone.lines.filter((l) => l.includes('got re-INVITE')).length;
  const seen = reinvites();
  const oldSdp = await page.evaluate(() => window.softphone.call.peerConnection.localDescription.sdp);
  const from = page.wire.length;
  await page.reload();
  await waitConn(page, /^resumed$/);
  const reoffer = await waitWire(page, (e) => e.dir === 'out' && e.frame.control.package_type === 'call' && e.frame.header?.action === 'start' && e.frame.control.type === 'request', { from, message: 'the re-offer' });
  const answered = await waitWire(
    page,
    (e) => e.dir === 'in' && e.frame.control.correlation_id === reoffer.frame.control.correlation_id && e.frame.control.package_type === 'call',
    { from, message: "the re-offer's answer (the phone's 200 to the re-INVITE)" },
  );
  assert.equal(answered.frame.control.type, 'response', JSON.stringify(answered.frame));
  assert.equal(answered.frame.header.response_code ?? 200, 200);
  // baresip's only SIP peer is Kamailio: the re-INVITE came through it.
  await poll(async () => reinvites(), (n) => n === seen + 1, { message: 'one re-INVITE at the phone' });
  await waitCall(page, 'state', 'established');
  const fingerprint = (sdp) => /^a=fingerprint:(.+)$/m.exec(sdp)?.[1].trim();
  assert.notEqual(fingerprint(reoffer.frame.payload.sdp), fingerprint(oldSdp), 'a new DTLS fingerprint: a new association (RFC 8842 §5), which rtpengine then handshakes');
  assert.deepEqual(await engine.list(), [callId], 'the same rtpengine call: the re-INVITE updated it');
  await audioFlows(page);
  await poll(() => inboundEnergy(page), (e) => e > 0, { message: `the phone's tone on ${page.identity} after the reload` });
  await bothWays(engine, callId, before);
}

test('a page reloaded mid-call with a SIP phone: re-INVITE through Kamailio, audio back both ways, then each side hangs up', { skip: tools.skip }, async () => {
  tools.check();
  const rig = await startPhoneRig(running, { domain: DOMAIN });
  const { engine, gw, phone, browser } = rig;
  let alice;
  try {
    alice = await openPhone(browser, gw, 'alice');

    // The page calls the phone; the page reloads; the page hangs up.
    const out = await callPhone(alice, rig, DOMAIN);
    await reloadWithPhone(alice, phone, engine, out);
    await alice.click('#hangup-btn');
    await phone.event('CALL_CLOSED');
    await alice.locator('#incall').waitFor({ state: 'hidden' });
    await poll(() => engine.list(), (ids) => ids.length === 0, { message: 'no rtpengine call' });

    // The phone calls the page; the page reloads; the phone hangs up.
    await phone.cmd('dial', `sip:alice@${DOMAIN}`);
    await alice.locator('#incoming').waitFor({ state: 'visible' });
    await alice.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    await phone.event('CALL_ESTABLISHED');
    const [inc] = await poll(() => engine.list(), (ids) => ids.length === 1, { message: 'one rtpengine call' });
    await audioFlows(alice);
    await reloadWithPhone(alice, phone, engine, inc);
    await phone.cmd('hangup');
    await alice.locator('#incall').waitFor({ state: 'hidden' });
    await poll(() => engine.list(), (ids) => ids.length === 0, { message: 'no rtpengine call' });
  } catch (err) {
    console.log('--- alice console\n' + (alice?.consoleLines ?? []).slice(-40).join('\n'));
    console.log('--- alice wire\n' + (alice?.wire ?? []).slice(-30).map((e) => `${e.dir} ${e.frame.control?.type} ${e.frame.header?.action} ${e.frame.header?.response_code ?? ''}`).join('\n'));
    console.log('--- jsonrtcd\n' + gw.logs.slice(-80).join('\n'));
    console.log('--- baresip\n' + phone.lines.slice(-40).join('\n'));
    console.log('--- rtpengine\n' + engine.lines.slice(-40).join('\n'));
    throw err;
  }
});
