// Takes screenshots of the demo page (phone-sized) into docs/screenshots/:
// idle.png (signed in, a contact with a note, a chat, no voicemail service), ringing.png (incoming call)
// and in-call.png. Starts its own jsonrtcd and Chromium, like the tests.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
/** Scrolls to the top and drops the focus, so the shot shows the page's head. */
const top = (page) => page.evaluate(() => {
  document.activeElement?.blur();
  window.scrollTo(0, 0);
});

import { startGateway, launchBrowser, openPhone, waitCall, audioFlows, repoRoot } from './harness.mjs';

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
  await top(alice);
  await alice.screenshot({ path: join(out, 'in-call.png') });
  await alice.click('#hangup-btn');
  await bob.locator('#incall').waitFor({ state: 'hidden' });
  console.log(`screenshots written to ${out}`);
} finally {
  await browser?.close();
  await gw.stop();
}
