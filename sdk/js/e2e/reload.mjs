// Shared by reload.test.mjs and reload.bench.mjs: a call between two demo
// pages, and the time from a page's reload to audio flowing again.

/**
 * Runs in a page (as an init script and through evaluate): polls, every
 * 5 ms, the inbound audio packets of the current call's RTCPeerConnection,
 * and records in window.__firstAudio the Date.now() of the first packet
 * seen on a peer connection other than `skip` (the one before the reload,
 * on the side that stays).
 */
function watchAudio() {
  const skip = window.softphone?.call?.peerConnection ?? null;
  window.__firstAudio = null;
  const tick = async () => {
    const pc = window.softphone?.call?.peerConnection;
    if (pc && pc !== skip && pc.connectionState !== 'closed') {
      let n = 0;
      for (const s of (await pc.getStats()).values()) {
        if (s.type === 'inbound-rtp' && (s.kind === 'audio' || s.mediaType === 'audio')) n += s.packetsReceived ?? 0;
      }
      if (n > 0) {
        window.__firstAudio = Date.now();
        return;
      }
    }
    setTimeout(tick, 5);
  };
  tick();
}

/**
 * Reloads `page` while `other` stays, and resolves with the milliseconds
 * from the reload's navigation start to the first inbound audio packet on
 * the reloaded page (`reloaded`) and on the other page's new peer
 * connection (`other`), and to the connect request's sending
 * (`connectSent`) and its response's arrival (`resumed`).
 */
export async function timedReload(page, other) {
  await other.evaluate(watchAudio);
  if (!page.watchingAudio) {
    await page.addInitScript(watchAudio);
    page.watchingAudio = true;
  }
  await page.reload();
  const start = await page.evaluate(() => performance.timeOrigin);
  page.reloadStart = start;
  const first = (p) => p.waitForFunction(() => window.__firstAudio, null, { timeout: 20000, polling: 10 }).then((h) => h.jsonValue());
  const [a, b] = await Promise.all([first(page), first(other)]);
  // The connect exchange as the DevTools protocol saw it (recordWire).
  const connect = (dir) => page.wire.find((e) => e.at >= start && e.dir === dir && e.frame.header?.action === 'connect')?.at;
  return { reloaded: a - start, other: b - start, connectSent: connect('out') - start, resumed: connect('in') - start };
}
