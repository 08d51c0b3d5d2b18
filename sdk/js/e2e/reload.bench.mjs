// Time to audio after a page reload (npm run bench:reload): a call between
// two demo pages through a real jsonrtcd on loopback, with Chromium's fake
// media; one page is reloaded RELOADS times (default 20) as the caller, then
// as the callee, and each time the milliseconds from the reload's
// navigation start to the first inbound audio packet are measured on the
// reloaded page and on the page that stayed, with two parts of the first:
// until the connect request leaves (the page loading, before the SDK
// runs), and from the resume response on. Not part of npm run test:e2e.
import { startGateway, launchBrowser, openPhone, establishCall, waitCall } from './harness.mjs';
import { timedReload } from './reload.mjs';

/** The reload's signalling, in ms from its navigation start (VERBOSE=1). */
function timeline(page, other) {
  const start = page.reloadStart;
  const out = [];
  for (const [who, p] of [['reloaded', page], ['other', other]]) {
    for (const e of p.wire) {
      if (e.at < start) continue;
      const f = e.frame;
      out.push([Math.round(e.at - start), `${who} ${e.dir} ${f.control?.type}/${f.header?.action}`]);
    }
  }
  return out.sort((a, b) => a[0] - b[0]).map(([t, s]) => `${t} ${s}`).join(', ');
}

const reloads = Number(process.env.RELOADS) || 20;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(label, xs) {
  const s = [...xs].sort((a, b) => a - b);
  const f = (x) => `${Math.round(x)} ms`;
  console.log(`${label}: n=${s.length} p50 ${f(percentile(s, 50))} p99 ${f(percentile(s, 99))} min ${f(s[0])} max ${f(s[s.length - 1])}`);
}

const gw = await startGateway();
const browser = await launchBrowser(gw);
try {
  const alice = await openPhone(browser, gw, 'alice');
  const bob = await openPhone(browser, gw, 'bob');
  await establishCall(alice, bob);
  for (const [role, page, other] of [['caller', alice, bob], ['callee', bob, alice]]) {
    const reloaded = [];
    const stayed = [];
    const toConnect = [];
    const afterResume = [];
    for (let i = 0; i < reloads; i++) {
      const t = await timedReload(page, other);
      await waitCall(page, 'state', 'established');
      reloaded.push(t.reloaded);
      stayed.push(t.other);
      toConnect.push(t.connectSent);
      afterResume.push(t.reloaded - t.resumed);
      if (process.env.VERBOSE) console.log(role, i, JSON.stringify(t), timeline(page, other));
    }
    summary(`${role} reloaded, audio on the reloaded page`, reloaded);
    summary(`${role} reloaded, audio on the other page`, stayed);
    summary(`${role} reloaded, navigation to the connect request (the page loading)`, toConnect);
    summary(`${role} reloaded, resume response to audio on the reloaded page`, afterResume);
  }
  await alice.evaluate(() => window.softphone.call?.end());
} finally {
  await browser.close();
  await gw.stop();
}
