// Browser test: a failed resume, done right (issue 13). The gateway keeps
// its sessions in memory only and is killed and started again during a
// call: every resume fails. The pages start clean new sessions that work
// at once, their watched contacts come back watched, and the call card
// says why the call ended.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, openPhone, waitConnSeen, connMark, waitCall, audioFlows, answeredCall, printOnFailure } from './harness.mjs';

let gw;
let browser;
let alice;
let bob;

before(async () => {
  gw = await startGateway({ config: 'store:\n  backend: memory\n' });
  browser = await launchBrowser(gw);
  alice = await openPhone(browser, gw, 'alice');
  bob = await openPhone(browser, gw, 'bob');
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

/** Waits until page's contact who shows status (data-status) and text. */
async function waitContact(page, who, status, text) {
  await page.waitForFunction(
    ([w, s, x]) => {
      const li = document.querySelector(`#presence-list li[data-target="${w}"]`);
      return !!li && li.dataset.status === s && li.querySelector('.what').textContent === x;
    },
    [who, status, text],
    { timeout: 15000, polling: 100 },
  );
}

test('gateway restarted without its sessions: new sessions at once, contacts watched again, the call card says why the call ended', async () => {
  await printOnFailure({ alice, bob }, gw, async () => {
    await alice.fill('#watch-to', bob.identity);
    await alice.click('#watch-btn');
    await waitContact(alice, bob.identity, 'open', 'available');

    await answeredCall(alice, bob);
    await audioFlows(alice);
    const oldId = await alice.evaluate(() => window.softphone.session.id);

    const marks = [await connMark(alice), await connMark(bob)];
    await gw.restart();
    await waitConnSeen(alice, 'reconnecting', marks[0]);
    await waitConnSeen(alice, 'connected', marks[0], 30000);
    await waitConnSeen(bob, 'connected', marks[1], 30000);
    assert.notEqual(await alice.evaluate(() => window.softphone.session.id), oldId, 'a new session');

    // The call card says why the call ended, on both pages.
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => !document.getElementById('call-notice').hidden, null, { timeout: 15000, polling: 100 });
      const notice = await page.evaluate(() => ({ text: document.getElementById('call-notice').textContent, code: document.getElementById('call-notice').dataset.code }));
      assert.equal(notice.code, '1002');
      assert.match(notice.text, /could not resume the session/);
    }

    // Bob's contact comes back watched (not "unavailable (1002)"): bob's
    // presence was published again and alice subscribed again.
    await waitContact(alice, bob.identity, 'open', 'available');
    await bob.selectOption('#my-status', 'busy');
    await waitContact(alice, bob.identity, 'busy', 'busy');

    // The new sessions work at once: a call placed now is answered (the
    // first call after a failed resume once hung on "calling…").
    await answeredCall(alice, bob);
    await audioFlows(bob);
    await alice.click('#hangup-btn');
    await bob.locator('#incall').waitFor({ state: 'hidden' });
  });
});
