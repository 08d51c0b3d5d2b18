// The page's media helpers: the devices the user chose (remembered in
// localStorage), level meters, and call quality read from getStats.

const DEVICES_KEY = 'softphone.devices';

/** The chosen device ids by kind (audioinput, videoinput, audiooutput). */
export function chosenDevices() {
  try {
    const d = JSON.parse(localStorage.getItem(DEVICES_KEY) || '{}');
    return d && typeof d === 'object' ? d : {};
  } catch {
    return {};
  }
}

export function chooseDevice(kind, id) {
  const d = chosenDevices();
  if (id) d[kind] = id;
  else delete d[kind];
  localStorage.setItem(DEVICES_KEY, JSON.stringify(d));
}

/**
 * getUserMedia with the chosen microphone and camera. A device unplugged
 * since it was chosen falls back to the default rather than failing the
 * call. The ids are exact: Chromium takes an ideal deviceId as a hint it
 * may ignore.
 * @param {MediaStreamConstraints} c
 */
export async function getUserMedia(c) {
  const d = chosenDevices();
  const pick = (want, id) => (want && id ? { ...(typeof want === 'object' ? want : {}), deviceId: { exact: id } } : want);
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: pick(c.audio, d.audioinput), video: pick(c.video, d.videoinput) });
  } catch (err) {
    if (err?.name !== 'OverconstrainedError' && err?.name !== 'NotFoundError') throw err;
    return navigator.mediaDevices.getUserMedia(c);
  }
}

/**
 * A meter element that follows a stream's audio level, ten times a second,
 * until stop(). ctx is the page's AudioContext (one for every meter).
 */
export class LevelMeter {
  constructor(ctx, stream, meter) {
    this.meter = meter;
    this.source = ctx.createMediaStreamSource(stream);
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 512;
    this.source.connect(this.analyser);
    const buf = new Float32Array(this.analyser.fftSize);
    this.timer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(buf);
      let peak = 0;
      for (const x of buf) peak = Math.max(peak, Math.abs(x));
      // Speech peaks well under full scale: scale so that it fills the meter.
      meter.value = Math.min(1, peak * 2);
    }, 100);
  }

  stop() {
    clearInterval(this.timer);
    this.source.disconnect();
    this.meter.value = 0;
  }
}

/**
 * Call quality from two getStats reports a second or so apart: round trip
 * (ms, of the selected candidate pair), jitter (ms) and loss (%) of the
 * inbound audio, and the bitrates (kbit/s) both ways. Fields the browser
 * does not report yet are null.
 * @param {RTCStatsReport} now
 * @param {{at: number, sent: number, received: number}|null} prev
 */
export function callQuality(now, prev) {
  let rtt = null;
  let jitter = null;
  let lost = 0;
  let received = 0;
  let bytesIn = 0;
  let bytesOut = 0;
  let at = 0;
  let pairId = null;
  for (const s of now.values()) {
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  }
  for (const s of now.values()) {
    at = Math.max(at, s.timestamp ?? 0);
    if (s.type === 'candidate-pair' && (s.id === pairId || (!pairId && s.nominated && s.state === 'succeeded'))) {
      if (s.currentRoundTripTime != null) rtt = s.currentRoundTripTime * 1000;
    } else if (s.type === 'inbound-rtp') {
      bytesIn += s.bytesReceived ?? 0;
      if (s.kind === 'audio') {
        if (s.jitter != null) jitter = s.jitter * 1000;
        lost += Math.max(0, s.packetsLost ?? 0);
        received += s.packetsReceived ?? 0;
      }
    } else if (s.type === 'outbound-rtp') {
      bytesOut += s.bytesSent ?? 0;
    }
  }
  const secs = prev ? (at - prev.at) / 1000 : 0;
  const rate = (bytes, before) => (secs > 0 ? Math.max(0, ((bytes - before) * 8) / secs / 1000) : null);
  return {
    rtt,
    jitter,
    loss: lost + received > 0 ? (100 * lost) / (lost + received) : null,
    sendKbps: prev ? rate(bytesOut, prev.sent) : null,
    recvKbps: prev ? rate(bytesIn, prev.received) : null,
    mark: { at, sent: bytesOut, received: bytesIn },
  };
}
