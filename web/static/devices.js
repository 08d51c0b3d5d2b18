// The Devices panel (microphone, camera and speaker, remembered), the
// call card's level meters and its call quality from getStats.
import { $, state, logEvent, callInfo } from './page.js';
import { chosenDevices, chooseDevice, getUserMedia, LevelMeter, callQuality } from './media.js';

const meters = { mic: null, remote: null, device: null };

export function stopMeter(name) {
  meters[name]?.stop();
  meters[name] = null;
}

/** A meter on stream's audio, or none when it has no audio (or audio cannot be analysed). */
function startMeter(name, stream, el) {
  stopMeter(name);
  state.tones.unlock();
  const ctx = state.tones.ctx;
  if (!ctx || !stream || stream.getAudioTracks().length === 0) return;
  meters[name] = new LevelMeter(ctx, stream, el);
}

/** The card's meters: this side's microphone and the other party. */
export function startMeters(call) {
  startMeter('mic', call.localStream, $('mic-level'));
  startMeter('remote', call.remoteStream, $('remote-level'));
}

/** Fills the device lists (labels show once the page may use the microphone). */
export async function refreshDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const chosen = chosenDevices();
  const noun = { audioinput: 'Microphone', videoinput: 'Camera', audiooutput: 'Speaker' };
  for (const sel of [$('mic-select'), $('cam-select'), $('speaker-select')]) {
    const kind = sel.dataset.kind;
    const opts = [new Option('Default', '')];
    let n = 0;
    for (const d of devices) {
      if (d.kind !== kind || d.deviceId === 'default' || !d.deviceId) continue;
      opts.push(new Option(d.label || `${noun[kind]} ${++n}`, d.deviceId));
    }
    sel.replaceChildren(...opts);
    sel.value = opts.some((o) => o.value === chosen[kind]) ? chosen[kind] : '';
  }
  // Choosing the speaker needs setSinkId (not in every browser).
  $('speaker-field').hidden = !('setSinkId' in HTMLMediaElement.prototype);
  applySpeaker();
}

function applySpeaker() {
  const id = chosenDevices().audiooutput ?? '';
  const el = $('remote-audio');
  if (el.setSinkId && el.sinkId !== id) el.setSinkId(id).catch((err) => logEvent(`speaker: ${err.message}`));
  // The ring goes to the chosen speaker too, where the browser allows it.
  const ctx = state.tones.ctx;
  if (ctx?.setSinkId && ctx.sinkId !== id) ctx.setSinkId(id).catch(() => {});
}

navigator.mediaDevices?.addEventListener?.('devicechange', () => {
  if (state.session) refreshDevices();
});

// The devices' names show once the page may use the microphone or the
// camera: a grant made anywhere (a call, the panel's meter, the site's
// settings, another tab) refreshes the lists, which said "Microphone 1".
for (const name of ['microphone', 'camera']) {
  navigator.permissions
    ?.query({ name })
    .then((p) =>
      p.addEventListener('change', () => {
        if (state.session) refreshDevices();
      }),
    )
    .catch(() => {});
}

for (const sel of [$('mic-select'), $('cam-select'), $('speaker-select')]) {
  sel.addEventListener('change', async () => {
    const kind = sel.dataset.kind;
    chooseDevice(kind, sel.value);
    logEvent(`${kind} set to ${sel.selectedOptions[0]?.textContent ?? 'default'}`);
    if (kind === 'audiooutput') return applySpeaker();
    const audio = kind === 'audioinput';
    if (audio && meters.device) startPreview();
    // Calls switch their track in place: no re-offer, the other party hears the new microphone.
    for (const call of state.calls) {
      const has = audio ? call.localStream?.getAudioTracks().length : call.localStream?.getVideoTracks().length;
      if (!has) continue;
      try {
        const stream = await getUserMedia({ audio, video: !audio });
        await call.replaceTrack(audio ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0]);
      } catch (err) {
        logEvent(`switching ${kind} failed: ${err.message}`);
      }
    }
  });
}

/** The devices panel's meter: the chosen microphone, while the panel is open. */
let preview = null;
async function startPreview() {
  stopPreview();
  try {
    const stream = await getUserMedia({ audio: true, video: false });
    if (!$('devices').open) return stream.getTracks().forEach((t) => t.stop());
    preview = stream;
    startMeter('device', stream, $('device-level'));
    refreshDevices();
  } catch (err) {
    logEvent(`microphone: ${err.message}`);
  }
}

function stopPreview() {
  stopMeter('device');
  for (const t of preview?.getTracks() ?? []) t.stop();
  preview = null;
}

$('devices').addEventListener('toggle', () => ($('devices').open ? startPreview() : stopPreview()));

/** Reads the card's call quality from getStats (called each second while the call is up). */
export async function updateQuality() {
  const call = state.call;
  const pc = call?.peerConnection;
  if (!pc || call.state !== 'established') return;
  const info = callInfo.get(call);
  const q = callQuality(await pc.getStats(), info.stats ?? null);
  info.stats = q.mark;
  if (state.call !== call) return;
  const el = $('call-quality');
  const ms = (x) => (x == null ? '–' : `${Math.round(x)} ms`);
  const kbps = (x) => (x == null ? '–' : `${Math.round(x)}`);
  el.textContent = `Round trip ${ms(q.rtt)} · jitter ${ms(q.jitter)} · loss ${q.loss == null ? '–' : `${q.loss.toFixed(1)} %`} · ↑${kbps(q.sendKbps)} ↓${kbps(q.recvKbps)} kbit/s`;
  el.dataset.rtt = q.rtt == null ? '' : String(q.rtt);
  el.dataset.jitter = q.jitter == null ? '' : String(q.jitter);
  el.dataset.loss = q.loss == null ? '' : String(q.loss);
  el.dataset.recv = q.recvKbps == null ? '' : String(q.recvKbps);
  el.dataset.send = q.sendKbps == null ? '' : String(q.sendKbps);
}
