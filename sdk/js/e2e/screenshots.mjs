// Takes screenshots of the demo page (phone-sized) into docs/screenshots/:
// idle.png (signed in, a contact with a note, a chat, no voicemail service), ringing.png (incoming call),
// in-call.png (levels and call quality), video-call.png, call-waiting.png (a second call rings),
// two-calls.png (one held, listed with Switch and End) and history.png (the history with a missed
// call, and the devices). Starts its own jsonrtcd and Chromium, like the tests.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
/** Scrolls to the top and drops the focus, so the shot shows the page's head. */
const top = (page) => page.evaluate(() => {
  document.activeElement?.blur();
  window.scrollTo(0, 0);
});

import { startGateway, launchBrowser, openPhone, waitCall, audioFlows, repoRoot } from './harness.mjs';

/** Waits until the call card shows its quality figures. */
const quality = (page) => page.waitForFunction(() => document.getElementById('call-quality').dataset.rtt !== '', null, { polling: 100 });

const out = join(repoRoot, 'docs', 'screenshots');
await mkdir(out, { recursive: true });
const gw = await startGateway();
let browser;
try {
  browser = await launchBrowser(gw);
  const alice = await openPhone(browser, gw, 'alice', { query: '' });
  const bob = await openPhone(browser, gw, 'bob', { query: '' });
  await alice.fill('#watch-to', bob.identity);
  await alice.click('#watch-btn');
  await bob.fill('#my-note', 'at my desk');
  await bob.click('#note-btn');
  await alice.waitForFunction(() => document.querySelector('#presence-list li .what')?.textContent === 'available · at my desk', null, { polling: 100 });
  await alice.locator('#vm[data-waiting="none"]').waitFor();
  await alice.fill('#chat-to', bob.identity);
  await alice.fill('#chat-input', 'Free for a quick call?');
  await alice.click('#chat-send');
  await bob.locator('#chat-log li.in').waitFor();
  await bob.fill('#chat-input', 'Sure, ring me');
  await bob.click('#chat-send');
  await alice.locator('#chat-log li.in').waitFor();
  await alice.locator('#chat-log li.out[data-delivered="true"]').waitFor();
  await alice.fill('#address', bob.identity);
  await alice.locator('#presence-list li').waitFor();
  await top(alice);
  await alice.screenshot({ path: join(out, 'idle.png') });

  await alice.click('#call-btn');
  await bob.locator('#incoming').waitFor({ state: 'visible' });
  await waitCall(alice, 'state', 'alerting');
  await top(bob);
  await bob.screenshot({ path: join(out, 'ringing.png') });

  await bob.click('#accept-btn');
  await waitCall(alice, 'state', 'established');
  await audioFlows(alice);
  await alice.click('#dtmf-btn');
  await alice.click('#dtmf-pad button[data-dtmf="4"]');
  await alice.click('#dtmf-pad button[data-dtmf="2"]');
  await alice.waitForFunction(() => document.getElementById('call-timer').textContent !== '00:00', null, { polling: 100 });
  await quality(alice);
  await top(alice);
  await alice.screenshot({ path: join(out, 'in-call.png') });

  // Call waiting: carol calls bob while he talks to alice.
  const carol = await openPhone(browser, gw, 'carol', { query: '' });
  await carol.fill('#address', bob.identity);
  await carol.click('#call-btn');
  await bob.locator('#incoming[data-waiting="true"]').waitFor({ state: 'visible' });
  await top(bob);
  await bob.screenshot({ path: join(out, 'call-waiting.png') });
  await bob.click('#accept-btn');
  await bob.locator('#call-list li[data-held="true"]').waitFor();
  await waitCall(bob, 'state', 'established');
  await quality(bob);
  await top(bob);
  await bob.screenshot({ path: join(out, 'two-calls.png') });
  await carol.click('#hangup-btn');
  await alice.click('#hangup-btn');
  await bob.locator('#incall').waitFor({ state: 'hidden' });

  // A video call, answered with video.
  await alice.check('#video');
  await alice.fill('#address', bob.identity);
  await alice.click('#call-btn');
  await bob.locator('#incoming[data-video="true"]').waitFor({ state: 'visible' });
  await bob.click('#accept-btn');
  await waitCall(bob, 'state', 'established');
  await bob.waitForFunction(() => document.getElementById('remote-video').videoWidth > 0 && !document.getElementById('videos').hidden, null, { polling: 100 });
  await quality(bob);
  await top(bob);
  await bob.screenshot({ path: join(out, 'video-call.png') });
  await bob.click('#hangup-btn');
  await alice.locator('#incall').waitFor({ state: 'hidden' });
  await alice.uncheck('#video');

  // A missed call, then bob's history and devices.
  await carol.fill('#address', bob.identity);
  await carol.click('#call-btn');
  await bob.locator('#incoming').waitFor({ state: 'visible' });
  await carol.click('#hangup-btn');
  await bob.locator('#missed-badge:not([hidden])').waitFor();
  await bob.click('#devices summary');
  await bob.waitForFunction(() => document.querySelectorAll('#mic-select option').length > 1, null, { polling: 100 });
  await bob.click('#history summary');
  await bob.evaluate(() => {
    document.activeElement?.blur();
    document.getElementById('history').scrollIntoView();
  });
  await bob.screenshot({ path: join(out, 'history.png') });
  console.log(`screenshots written to ${out}`);
} finally {
  await browser?.close();
  await gw.stop();
}
