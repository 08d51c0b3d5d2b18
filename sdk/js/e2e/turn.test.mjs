// Browser test: TURN credentials from the gateway. jsonrtcd (web.turn)
// hands each signed-in page a TURN REST credential for a real coturn
// (use-auth-secret) in /config.json; two pages forced to relay-only ICE
// (iceTransportPolicy "relay") call each other through it and hear each
// other; coturn refuses an expired credential made the same way, and
// takes the one the connect response handed the session.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, waitCall, audioFlows } from './harness.mjs';
import { needTools } from './sip.mjs';
import { startCoturn } from './media.mjs';

const tools = needTools(['turnserver'], 'apt-get install coturn');
const SECRET = 'e2e-turn-secret-0123456789';

const running = [];
after(async () => {
  for (const stop of running.reverse()) await stop();
});

/** The candidate types of the call's selected candidate pair on page. */
function selectedPair(page) {
  return page.evaluate(async () => {
    const stats = await window.softphone.call.peerConnection.getStats();
    for (const s of stats.values()) {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const pair = stats.get(s.selectedCandidatePairId);
      return { local: stats.get(pair.localCandidateId)?.candidateType, remote: stats.get(pair.remoteCandidateId)?.candidateType };
    }
    return null;
  });
}

/**
 * What gathering relay candidates with server gives on page: 'relay' when
 * coturn allocated one, else the first ICE candidate error's code.
 */
function tryRelay(page, server) {
  return page.evaluate(async (s) => {
    const pc = new RTCPeerConnection({ iceServers: [s], iceTransportPolicy: 'relay' });
    pc.createDataChannel('probe');
    const result = new Promise((resolve) => {
      pc.onicecandidate = (e) => e.candidate?.type === 'relay' && resolve('relay');
      pc.onicecandidateerror = (e) => resolve(`error ${e.errorCode}`);
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && setTimeout(() => resolve('none'), 100);
    });
    await pc.setLocalDescription(await pc.createOffer());
    const r = await result;
    pc.close();
    return r;
  }, server);
}

test('two pages call through coturn with relay-only ICE, on TURN credentials from the gateway; coturn refuses an expired one', { skip: tools.skip }, async () => {
  tools.check();
  const turn = await startCoturn({ secret: SECRET });
  running.push(turn.stop);
  const gw = await startGateway({ config: `web:\n  turn:\n    urls: ["${turn.url}"]\n    secret: ${SECRET}\n    ttl: 1h\n` });
  running.push(gw.stop);
  // The credential is the requester's own, fresh, good for the ttl.
  const conf = await fetch(`${gw.url}/config.json?app=demo`).then((r) => r.json());
  const given = conf.iceServers.find((s) => s.urls[0] === turn.url);
  assert.ok(given, `no TURN server in ${JSON.stringify(conf)}`);
  const expiry = Number(given.username.split(':')[0]) * 1000;
  assert.ok(expiry > Date.now() + 59 * 60000 && expiry <= Date.now() + 3600000, `credential expires at ${new Date(expiry).toISOString()}`);
  assert.equal(given.credential, turn.credential(given.username.slice(given.username.indexOf(':') + 1), expiry).credential);

  const browser = await launchBrowser(gw);
  running.push(() => browser.close());
  let alice;
  let bob;
  try {
    const query = 'relay=1&ping=1000&pingPeriod=4000';
    alice = await openPhone(browser, gw, 'alice', { query });
    bob = await openPhone(browser, gw, 'bob', { query });
    await alice.fill('#address', bob.identity);
    await alice.click('#call-btn');
    await bob.locator('#incoming').waitFor({ state: 'visible' });
    await bob.click('#accept-btn');
    await waitCall(alice, 'state', 'established');
    await waitCall(bob, 'state', 'established');
    await audioFlows(alice);
    await audioFlows(bob);
    assert.deepEqual(await selectedPair(alice), { local: 'relay', remote: 'relay' });
    await alice.click('#hangup-btn');
    await bob.locator('#incall').waitFor({ state: 'hidden' });

    // coturn itself checks the scheme: a credential made the same way
    // allocates, one whose time has passed is refused (401).
    const fresh = turn.credential('carol', Date.now() + 600000);
    assert.equal(await tryRelay(alice, { urls: turn.url, ...fresh }), 'relay');
    const expired = turn.credential('carol', Date.now() - 60000);
    assert.equal(await tryRelay(alice, { urls: turn.url, ...expired }), 'error 401');

    // The connect response handed alice's session a TURN credential of
    // its own too (docs/protocol.md §4.10), which the SDK uses when the
    // application gives none: coturn takes it.
    const fromConnect = await alice.evaluate(() => window.softphone.session.gatewayIceServers?.find((s) => s.urls[0].startsWith('turn:')));
    assert.ok(fromConnect?.username?.includes(':') && fromConnect.credential, `connect response's TURN server: ${JSON.stringify(fromConnect)}`);
    assert.equal(await tryRelay(alice, fromConnect), 'relay');
    // The page gives the SDK no servers of its own, so the relay-only
    // call above ran on the connect response's credential, and a renewal
    // (the SDK's own at 80 % of the ttl) is what the next call uses.
    const servers = await alice.evaluate(async () => {
      const s = window.softphone.session;
      const before = JSON.stringify(s.rtc.iceServers) === JSON.stringify(s.gatewayIceServers);
      await s.renewIceServers();
      return { before, after: s.rtc.iceServers === s.gatewayIceServers };
    });
    assert.deepEqual(servers, { before: true, after: true });
  } catch (err) {
    console.log('--- alice console\n' + (alice?.consoleLines ?? []).slice(-40).join('\n'));
    console.log('--- jsonrtcd\n' + gw.logs.slice(-40).join('\n'));
    console.log('--- coturn\n' + turn.lines.slice(-60).join('\n'));
    throw err;
  }
});
