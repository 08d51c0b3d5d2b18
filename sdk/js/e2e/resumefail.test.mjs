// Browser test: a failed resume, done right (issue 13). The gateway keeps
// its sessions in memory only and is killed and started again during a
// call: every resume fails. The pages start clean new sessions that work
// at once, their watched contacts come back watched, and the call card
// says why the call ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { phones, waitConnSeen, connMark, waitCall, audioFlows, answeredCall, printOnFailure, waitContact, watchContact } from './harness.mjs';

const f = phones(['alice', 'bob'], { config: 'store:\n  backend: memory\n' });

test('gateway restarted without its sessions: new sessions at once, contacts watched again, the call card says why the call ended', async () => {
  const { gw, alice, bob } = f;
  await printOnFailure({ alice, bob }, gw, async () => {
    await watchContact(alice, bob.identity);

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
