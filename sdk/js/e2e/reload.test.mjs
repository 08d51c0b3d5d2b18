// Browser tests: a page reloaded during a call gets its media back fast
// (sdk/js README, "Calls across a page reload"): the restored call builds
// its new RTCPeerConnection and offer while the session resumes, offers
// the codecs it had negotiated with a new DTLS fingerprint, and audio
// flows again both ways; then either side hangs up cleanly.
import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, establishCall, endCalls, e2eTest, waitIdle, framesDecoded, waitConn, waitCall, waitWire, audioFlows, poll } from './harness.mjs';

let gw;
let browser;
let alice;
let bob;

before(async () => {
  gw = await startGateway();
  browser = await launchBrowser(gw);
  alice = await openPhone(browser, gw, 'alice');
  bob = await openPhone(browser, gw, 'bob');
  // In every page from now on: when the page first asked for the
  // microphone and when the connect response reached it (performance.now()).
  for (const p of [alice, bob]) {
    await p.addInitScript(() => {
      const seen = (window.__reload = { media: null, resumed: null });
      const md = navigator.mediaDevices;
      const getUserMedia = md.getUserMedia.bind(md);
      md.getUserMedia = (c) => {
        seen.media ??= performance.now();
        return getUserMedia(c);
      };
      const WS = window.WebSocket;
      window.WebSocket = class extends WS {
        constructor(...args) {
          super(...args);
          this.addEventListener('message', (ev) => {
            if (seen.resumed === null && String(ev.data).includes('"action":"connect"')) seen.resumed = performance.now();
          });
        }
      };
    });
  }
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

afterEach(() => endCalls([alice, bob]));

/** A test that prints the pages' consoles and the gateway's log when it fails. */
const e2e = e2eTest(() => ({ gw, pages: { alice, bob } }));

const fingerprint = (sdp) => /^a=fingerprint:(.+)$/m.exec(sdp)?.[1].trim();
const audioPayloads = (sdp) => /^m=audio \S+ \S+ (.+)$/m.exec(sdp)?.[1].trim().split(' ').map(Number);

/** The current call's audio codecs as negotiated, and its local SDP. */
function callMedia(page) {
  return page.evaluate(() => {
    const pc = window.softphone.call.peerConnection;
    const t = pc.getTransceivers().find((x) => x.receiver.track.kind === 'audio');
    return { codecs: t.sender.getParameters().codecs, sdp: pc.localDescription.sdp };
  });
}

/** The mime type of the codec the page receives audio with. */
function inboundCodec(page) {
  return page.evaluate(async () => {
    const stats = await window.softphone.call.peerConnection.getStats();
    for (const s of stats.values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.codecId) return stats.get(s.codecId)?.mimeType ?? null;
    }
    return null;
  });
}

/**
 * Reloads page during its call with other and checks what comes back:
 * the call card, a re-offer created before the resume response arrived,
 * sent with a new DTLS fingerprint and the payload types `pts`,
 * a new peer connection on the other side, and audio both ways.
 */
async function reloadDuringCall(page, other, pts) {
  const before = await callMedia(page);
  // A browser's SDP announces trickle ICE: after the reload the re-offer
  // leaves without waiting for gathering to end.
  const saved = await page.evaluate(() => JSON.parse(sessionStorage.getItem('jsonrtc.session')).calls[0]);
  assert.equal(saved.trickles, true, 'the far end trickles, as saved with the call');
  await other.evaluate(() => {
    window.__oldPc = window.softphone.call.peerConnection;
  });
  const from = page.wire.length;
  await page.reload();
  await waitConn(page, /^resumed$/);
  await waitCall(page, 'state', 'established');
  assert.equal((await page.textContent('#call-peer')).trim(), other.identity, 'the call card comes back');
  const times = await page.evaluate(() => window.__reload);
  assert.ok(times.media !== null && times.resumed !== null, JSON.stringify(times));
  // The media is rebuilt while the session resumes, not after.
  assert.ok(times.media < times.resumed, `the microphone was asked for before the resume response (${JSON.stringify(times)})`);
  const reoffer = await waitWire(page, (e) => e.dir === 'out' && e.frame.control.package_type === 'call' && e.frame.header?.action === 'start' && e.frame.control.type === 'request', { from, message: 'the re-offer' });
  const sdp = reoffer.frame.payload.sdp;
  // The DTLS association died with the page: a new fingerprint says so
  // (RFC 8842 §5); rtpengine kept the dead one for the same fingerprint.
  assert.notEqual(fingerprint(sdp), fingerprint(before.sdp), 'a new DTLS certificate after the reload');
  assert.deepEqual(audioPayloads(sdp), pts ?? before.codecs.map((c) => c.payloadType), 'the re-offer offers the negotiated codecs');
  await poll(() => other.evaluate(() => window.softphone.call?.peerConnection !== window.__oldPc), (x) => x, { message: `a new peer connection on ${other.identity}` });
  await audioFlows(page);
  await audioFlows(other);
}

e2e('the caller reloads: the call and its audio come back, then the caller hangs up', async () => {
  await establishCall(alice, bob);
  await audioFlows(alice);
  await reloadDuringCall(alice, bob);
  await alice.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('the callee reloads twice: the call and its audio come back each time, then the caller hangs up', async () => {
  await establishCall(alice, bob);
  await audioFlows(bob);
  await reloadDuringCall(bob, alice);
  await reloadDuringCall(bob, alice);
  await alice.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('the saved codecs are the ones offered after a reload: PCMU alone, and audio flows in PCMU', async () => {
  await establishCall(alice, bob);
  await audioFlows(alice);
  assert.equal(await inboundCodec(alice), 'audio/opus');
  // As if the call had settled on PCMU (a SIP phone's answer): what the
  // page saves when it goes is what it offers after the reload.
  const pts = await alice.evaluate(() => {
    const call = window.softphone.call;
    call._codecs.audio = call._codecs.audio.filter((c) => /^audio\/(pcmu|telephone-event)$/i.test(c.mimeType) && c.clockRate === 8000);
    return call._codecs.audio.map((c) => c.payloadType);
  });
  assert.equal(pts.length, 2, 'PCMU and telephone-event were negotiated');
  await reloadDuringCall(alice, bob, pts);
  assert.equal(await inboundCodec(alice), 'audio/PCMU');
  assert.equal(await inboundCodec(bob), 'audio/PCMU');
  await bob.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('the caller reloads while the call rings: its re-offer is ready when the callee answers, and audio flows both ways', async () => {
  await alice.fill('#address', bob.identity);
  await alice.click('#call-btn');
  await bob.locator('#incoming').waitFor({ state: 'visible' });
  await waitCall(alice, 'state', 'alerting');
  await alice.reload();
  await waitConn(alice, /^resumed$/);
  await waitCall(alice, 'state', 'alerting');
  // Built while it rings (the page's timeline): the microphone was asked
  // for before the resume response came.
  const times = await alice.evaluate(() => window.__reload);
  assert.ok(times.media !== null && times.media < times.resumed, `the microphone was asked for before the resume response (${JSON.stringify(times)})`);
  const from = alice.wire.length;
  await bob.click('#accept-btn');
  const complete = await waitWire(alice, (e) => e.dir === 'out' && e.frame.header?.action === 'complete', { from, message: 'the complete' });
  const reoffer = await waitWire(alice, (e) => e.dir === 'out' && e.frame.control.type === 'request' && e.frame.header?.action === 'start', { from, message: 'the re-offer' });
  assert.ok(reoffer.at - complete.at < 100, `the re-offer leaves with the complete (${reoffer.at - complete.at} ms after it)`);
  await waitCall(alice, 'state', 'established');
  await waitCall(bob, 'state', 'established');
  await audioFlows(alice);
  await audioFlows(bob);
  await bob.click('#hangup-btn');
  await waitIdle(alice);
  await waitIdle(bob);
});

e2e('a video call: the caller reloads, audio and video come back both ways', async () => {
  await alice.check('#video');
  try {
    await establishCall(alice, bob);
    await poll(() => framesDecoded(bob), (n) => n > 0, { message: 'video frames decoded on bob' });
    await reloadDuringCall(alice, bob);
    for (const p of [alice, bob]) {
      // Counted on the new peer connections: frames of the video track
      // that joined the transceiver after the offer (replaceTrack).
      await poll(() => framesDecoded(p), (n) => n > 0, { message: `video frames decoded on ${p.identity} after the reload` });
    }
    await bob.click('#hangup-btn');
    await waitIdle(alice);
    await waitIdle(bob);
  } finally {
    await alice.uncheck('#video');
  }
});
