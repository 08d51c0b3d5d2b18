// Browser test: the demo page and a plain RTP softphone talk through
// rtpengine. jsonrtcd anchors SIP calls' media in a real rtpengine
// (media.rtpengine); Kamailio is the registrar and proxy of example.com;
// baresip (PCMU only, no ICE, no DTLS) is the phone, its audio device a
// bridge that sends back what it receives. Chromium's fake microphone
// makes a tone. Each way round: audio flows both ways (the page's
// inbound-rtp packets grow; rtpengine's query counts packets from both
// sides), hold and resume change the media directions, a hang-up ends
// the call, and rtpengine holds no call afterwards.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, waitCall, audioFlows, directions, poll } from './harness.mjs';
import { needTools, startKamailio } from './sip.mjs';
import { startRTPEngine, startBaresip } from './media.mjs';

const DOMAIN = 'example.com';
const tools = needTools(['kamailio', 'rtpengine', 'baresip'], 'apt-get install kamailio rtpengine-daemon baresip-core');

const running = [];
after(async () => {
  for (const stop of running.reverse()) await stop();
});

/** Waits until rtpengine holds exactly n calls; returns their ids. */
function calls(engine, n) {
  return poll(() => engine.list(), (ids) => ids.length === n, { timeout: 15000, message: `${n} rtpengine call(s)` });
}

/** Waits until rtpengine has received packets from both sides of callId. */
async function bothWays(engine, callId) {
  const got = await poll(
    () => engine.packets(callId),
    (p) => Object.keys(p).length === 2 && Object.values(p).every((n) => n > 20),
    { timeout: 15000, message: `packets from both sides of ${callId} in rtpengine` },
  );
  return got;
}

test('the page and a plain RTP phone talk through rtpengine, each calling the other; hold, resume, hang-up from each side', { skip: tools.skip }, async () => {
  tools.check();
  const engine = await startRTPEngine();
  running.push(engine.stop);
  const kamailio = await startKamailio({ domain: DOMAIN });
  running.push(kamailio.stop);
  const gw = await startGateway({
    config:
      `sip:\n  listen:\n    udp: 127.0.0.1:0\n  domain: ${DOMAIN}\n  outbound_proxy: sip:${kamailio.addr}\n  registrar: sip:${kamailio.addr}\n  user_agent: jsonrtc-e2e\n` +
      `media:\n  rtpengine: [${engine.ng}]\n`,
  });
  running.push(gw.stop);
  const phone = await startBaresip({ user: 'phone', domain: DOMAIN, kamailio, autoAnswer: true });
  running.push(phone.stop);
  const browser = await launchBrowser(gw);
  running.push(() => browser.close());
  let alice;
  try {
    alice = await openPhone(browser, gw, 'alice');

    // The page calls the phone, which answers at once.
    await alice.fill('#address', `phone@${DOMAIN}`);
    await alice.click('#call-btn');
    await waitCall(alice, 'state', 'established');
    await phone.event('CALL_ESTABLISHED');
    const [out] = await calls(engine, 1);
    await audioFlows(alice);
    const first = await bothWays(engine, out);
    // The page holds: sendonly toward rtpengine, the phone's answer
    // recvonly; then resumes.
    await alice.click('#hold-btn');
    await waitCall(alice, 'held', 'true');
    assert.deepEqual(await directions(alice), ['sendonly']);
    await alice.click('#hold-btn');
    await waitCall(alice, 'held', 'false');
    assert.deepEqual(await directions(alice), ['sendrecv']);
    await audioFlows(alice);
    await alice.click('#hangup-btn');
    await phone.event('CALL_CLOSED');
    await alice.locator('#incall').waitFor({ state: 'hidden' });
    await calls(engine, 0);

    // The phone calls the page, which answers.
    await phone.cmd('dial', `sip:alice@${DOMAIN}`);
    await alice.locator('#incoming').waitFor({ state: 'visible' });
    await alice.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    await phone.event('CALL_ESTABLISHED');
    const [inc] = await calls(engine, 1);
    await audioFlows(alice);
    const second = await bothWays(engine, inc);
    // The phone holds and resumes: the page's side follows.
    await phone.cmd('hold');
    await waitCall(alice, 'remoteHeld', 'true');
    assert.deepEqual(await directions(alice), ['recvonly']);
    await phone.cmd('resume');
    await waitCall(alice, 'remoteHeld', 'false');
    assert.deepEqual(await directions(alice), ['sendrecv']);
    await audioFlows(alice);
    await phone.cmd('hangup');
    await alice.locator('#incall').waitFor({ state: 'hidden' });
    await calls(engine, 0);
    console.log(`rtpengine packets by side: page calls phone ${JSON.stringify(first)}; phone calls page ${JSON.stringify(second)}`);
  } catch (err) {
    console.log('--- alice console\n' + (alice?.consoleLines ?? []).slice(-40).join('\n'));
    console.log('--- alice wire\n' + (alice?.wire ?? []).slice(-30).map((e) => `${e.dir} ${e.frame.control?.type} ${e.frame.header?.action} ${e.frame.header?.response_code ?? ''}`).join('\n'));
    console.log('--- jsonrtcd\n' + gw.logs.slice(-80).join('\n'));
    console.log('--- baresip\n' + phone.lines.slice(-40).join('\n'));
    console.log('--- rtpengine\n' + engine.lines.slice(-40).join('\n'));
    throw err;
  }
});
