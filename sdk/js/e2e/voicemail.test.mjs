// Browser test: the demo page's voicemail indicator end to end through SIP.
// A SIPp voicemail server (scenarios/voicemail_notifier.xml) notifies
// message summaries; Kamailio is the proxy and registrar of example.com and
// routes message-summary SUBSCRIBEs to it; jsonrtcd's SIP side goes through
// Kamailio (outbound_proxy). alice signs in on the page, which subscribes
// to her own mailbox; the indicator shows what the voicemail server says,
// and signing out ends the subscription (SIPp completes its scenario).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, waitWire } from './harness.mjs';
import { needTools, startKamailio, startSipp } from './sip.mjs';

const DOMAIN = 'example.com';
const tools = needTools(['sipp', 'kamailio'], 'apt-get install sip-tester kamailio');

const running = [];
after(async () => {
  // Last started, first stopped: the browser, the gateway, Kamailio, SIPp.
  for (const stop of running.reverse()) await stop();
});

const isMWI = (e) => e.frame.control?.package_type === 'message_notification';

/** Waits until the page's voicemail indicator is in state waiting with text and title. */
async function waitIndicator(page, waiting, text, title, timeout = 15000) {
  try {
    await page.waitForFunction(
      ([w, x, t]) => {
        const vm = document.getElementById('vm');
        return vm.dataset.waiting === w && document.getElementById('vm-text').textContent === x && vm.title === t && vm.getAttribute('aria-label') === t;
      },
      [waiting, text, title],
      { timeout, polling: 100 },
    );
  } catch (err) {
    const have = await page.evaluate(() => {
      const vm = document.getElementById('vm');
      return `${vm.dataset.waiting} / ${document.getElementById('vm-text').textContent} / ${vm.title}`;
    });
    throw new Error(`voicemail indicator is not ${waiting} / ${text} / ${title} (has ${have}): ${err.message}`);
  }
}

test('the voicemail indicator shows the SIP mailbox: 2 new, then none; signing out unsubscribes', { skip: tools.skip }, async () => {
  tools.check();
  const notifier = await startSipp('voicemail_notifier.xml', { threePCC: true });
  running.push(notifier.stop);
  const kamailio = await startKamailio({ domain: DOMAIN, voicemailPort: notifier.port });
  running.push(kamailio.stop);
  const gw = await startGateway({
    config: `log:\n  level: debug\nsip:\n  listen:\n    udp: 127.0.0.1:0\n  domain: ${DOMAIN}\n  outbound_proxy: sip:${kamailio.addr}\n  user_agent: jsonrtc-e2e\n`,
  });
  running.push(gw.stop);
  const browser = await launchBrowser(gw);
  running.push(() => browser.close());
  let alice;
  try {
    alice = await openPhone(browser, gw, 'alice');
    assert.equal(alice.identity, 'alice');

    // The page subscribes to alice's own mailbox: the gateway makes it
    // sip:alice@example.com, Kamailio takes it to the voicemail server.
    const start = await waitWire(alice, (x) => x.dir === 'out' && isMWI(x) && x.frame.header?.action === 'start', { message: 'the voicemail subscribe' });
    assert.equal(start.frame.header.target, 'alice');
    const id = start.frame.control.subsession_id;
    const resp = await waitWire(alice, (x) => x.dir === 'in' && x.frame.control.correlation_id === start.frame.control.correlation_id, { message: 'the subscribe answer' });
    assert.equal(resp.frame.control.type, 'response', JSON.stringify(resp.frame));
    assert.equal(resp.frame.header.response_code, 200);
    assert.equal(resp.frame.header.expiry, 3600);

    // First summary: 2 new and 8 old voice messages, 2 of the old urgent.
    await waitIndicator(alice, 'yes', '2 new', 'Voicemail: 2 new, 8 old (2 urgent). Call sip:alice@example.com to listen');
    // The summary names the mailbox's account: the button calls it.
    assert.equal(await alice.isEnabled('#vm'), true);
    assert.equal(await alice.getAttribute('#vm', 'data-account'), 'sip:alice@example.com');
    // The voicemail server sent it and waits for the cue to send the next.
    const sent = await notifier.command();
    const callId = sent.headers['call-id'];
    assert.ok(callId, `the notifier's command names its dialog: ${sent.text}`);

    // Second summary: the messages were listened to.
    notifier.cue(callId);
    await waitIndicator(alice, 'no', '0', 'Voicemail: no new messages, 10 old (2 urgent). Call sip:alice@example.com to listen');

    const notifies = alice.wire.filter((x) => x.dir === 'in' && isMWI(x) && x.frame.header?.action === 'notify');
    assert.deepEqual(
      notifies.map((n) => n.frame.payload),
      [
        { messages_waiting: 'yes', message_account: 'sip:alice@example.com', 'voice-message': '2/8 (0/2)' },
        { messages_waiting: 'no', message_account: 'sip:alice@example.com', 'voice-message': '0/10 (0/2)' },
      ],
    );
    for (const n of notifies) {
      assert.equal(n.frame.control.type, 'message');
      assert.equal(n.frame.control.subsession_id, id, 'notifies come on the subscription');
    }
    // One subscription, never ended by the gateway.
    const starts = alice.wire.filter((x) => x.dir === 'out' && isMWI(x) && x.frame.header?.action === 'start');
    assert.deepEqual(starts.map((s) => s.frame.control.subsession_id), [id]);
    assert.deepEqual(alice.wire.filter((x) => x.dir === 'in' && isMWI(x) && x.frame.header?.action === 'shutdown').map((x) => x.frame), []);

    // Signing out ends the session, hence the SIP subscription: SUBSCRIBE
    // Expires: 0, answered, and the notifier's final NOTIFY. SIPp exits 0
    // only when its scenario ran to the end.
    await alice.click('#signout-btn');
    await alice.locator('#signin').waitFor({ state: 'visible' });
    const res = await notifier.result();
    assert.deepEqual(res, { code: 0, signal: null }, 'the voicemail server saw the whole scenario');
  } catch (err) {
    console.log('--- alice console\n' + (alice?.consoleLines ?? []).slice(-40).join('\n'));
    console.log('--- jsonrtcd\n' + gw.logs.slice(-120).join('\n'));
    console.log('--- kamailio\n' + kamailio.lines.slice(-60).join('\n'));
    console.log(await notifier.report());
    throw err;
  }
});
