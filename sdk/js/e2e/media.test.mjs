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
import { needTools, reservePorts, startKamailio, startSipp } from './sip.mjs';
import { startRTPEngine, startPhoneRig, anchoredConfig, callPhone, inboundEnergy } from './media.mjs';

const DOMAIN = 'example.com';
const tools = needTools(['kamailio', 'rtpengine', 'baresip'], 'apt-get install kamailio rtpengine-daemon baresip-core');
const echoTools = needTools(['kamailio', 'rtpengine', 'sipp'], 'apt-get install kamailio rtpengine-daemon sip-tester');

const running = [];
after(async () => {
  for (const stop of running.reverse()) await stop();
});

/** Waits until rtpengine holds exactly n calls; returns their ids. */
function calls(engine, n) {
  return poll(() => engine.list(), (ids) => ids.length === n, { timeout: 15000, message: `${n} rtpengine call(s)` });
}

/** Waits until the page has heard sound (non-zero audio energy) in its call. */
function hearsSound(page) {
  return poll(() => inboundEnergy(page), (e) => e > 0, { message: `audio energy on ${page.identity}` });
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

/**
 * The page shows what rtpengine counted once the call ended
 * (docs/protocol.md §5.8), whichever side hung up: packets from both.
 */
async function hasFigures(page) {
  const el = page.locator('#call-figures');
  await el.waitFor({ state: 'visible' });
  const [web, sip] = await Promise.all([el.getAttribute('data-web-packets'), el.getAttribute('data-sip-packets')]);
  assert.ok(Number(web) > 0 && Number(sip) > 0, `figures on the page: web ${web}, sip ${sip} packets`);
}

test('the page and a plain RTP phone talk through rtpengine, each calling the other; hold, resume, hang-up from each side', { skip: tools.skip }, async () => {
  tools.check();
  const rig = await startPhoneRig(running, { domain: DOMAIN });
  const { engine, gw, phone, browser } = rig;
  let alice;
  try {
    alice = await openPhone(browser, gw, 'alice');

    // The page calls the phone, which answers at once.
    const out = await callPhone(alice, rig, DOMAIN);
    await hearsSound(alice); // baresip's 440 Hz tone
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
    await hasFigures(alice);

    // The phone calls the page, which answers.
    await phone.cmd('dial', `sip:alice@${DOMAIN}`);
    await alice.locator('#incoming').waitFor({ state: 'visible' });
    await alice.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    // The last call's figures gave way to this one.
    assert.ok(await alice.locator('#call-figures').isHidden(), 'figures of the last call still shown');
    await phone.event('CALL_ESTABLISHED');
    const [inc] = await calls(engine, 1);
    await audioFlows(alice);
    await hearsSound(alice);
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
    await hasFigures(alice);
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

test('the page calls a plain RTP phone that echoes (SIPp -rtp_echo) through rtpengine and hears its own tone back', { skip: echoTools.skip }, async () => {
  echoTools.check();
  const media = await reservePorts(4);
  running.push(media.release);
  const echo = await startSipp('uas_echo.xml', { args: ['-rtp_echo', '-mi', '127.0.0.1', '-mp', String(media.port)] });
  running.push(echo.stop);
  const engine = await startRTPEngine();
  running.push(engine.stop);
  const kamailio = await startKamailio({ domain: DOMAIN, echoPort: echo.port });
  running.push(kamailio.stop);
  const gw = await startGateway({ config: anchoredConfig(DOMAIN, kamailio, engine) });
  running.push(gw.stop);
  const browser = await launchBrowser(gw);
  running.push(() => browser.close());
  let carol;
  try {
    carol = await openPhone(browser, gw, 'carol');
    await carol.fill('#address', `echo@${DOMAIN}`);
    await carol.click('#call-btn');
    await waitCall(carol, 'state', 'established');
    const [id] = await calls(engine, 1);
    // The only sound the page can get is its own (Chromium's fake
    // microphone beeps), sent back by SIPp through rtpengine.
    await audioFlows(carol);
    await hearsSound(carol);
    await bothWays(engine, id);
    await carol.click('#hangup-btn');
    await carol.locator('#incall').waitFor({ state: 'hidden' });
    assert.equal((await echo.result()).code, 0, await echo.report());
    await calls(engine, 0);
  } catch (err) {
    console.log('--- carol console\n' + (carol?.consoleLines ?? []).slice(-40).join('\n'));
    console.log('--- jsonrtcd\n' + gw.logs.slice(-60).join('\n'));
    console.log('--- sipp\n' + (await echo.report()));
    console.log('--- rtpengine\n' + engine.lines.slice(-40).join('\n'));
    throw err;
  }
});
