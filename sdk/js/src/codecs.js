/**
 * The codecs a call negotiated, kept across a page reload so that the
 * re-offer of the new RTCPeerConnection carries them alone and the far
 * end keeps them (no SDP rewriting: RTCRtpTransceiver.setCodecPreferences).
 */

/**
 * The codecs in use on each media kind of pc, in the order negotiated,
 * once an offer/answer exchange has completed.
 * @param {RTCPeerConnection} pc
 * @returns {Record<string, {payloadType: number, mimeType: string, clockRate: number, channels?: number, sdpFmtpLine?: string}[]>}
 */
export function negotiatedCodecs(pc) {
  const out = {};
  for (const t of pc.getTransceivers()) {
    const kind = t.receiver?.track?.kind;
    const codecs = t.sender?.getParameters?.().codecs ?? [];
    if (!kind || out[kind] || codecs.length === 0) continue;
    out[kind] = codecs.map(({ payloadType, mimeType, clockRate, channels, sdpFmtpLine }) => ({ payloadType, mimeType, clockRate, channels, sdpFmtpLine }));
  }
  return out;
}

function sameCodec(saved, cap) {
  return (
    saved.mimeType.toLowerCase() === cap.mimeType.toLowerCase() &&
    saved.clockRate === cap.clockRate &&
    (saved.channels ?? 1) === (cap.channels ?? 1) &&
    // A capability without fmtp (rtx: its apt= is the payload type's) matches any.
    (!cap.sdpFmtpLine || cap.sdpFmtpLine === saved.sdpFmtpLine)
  );
}

const HELPERS = /^(audio|video)\/(rtx|red|ulpfec|flexfec-03|cn|telephone-event)$/i;

/**
 * Restricts each transceiver of pc to the saved codecs of its kind, in
 * their order, where the browser still has them. A kind left with no
 * media codec keeps the browser's list: offering nothing would fail.
 * @param {RTCPeerConnection} pc
 * @param {ReturnType<typeof negotiatedCodecs>|null} saved
 * @param {{debug: Function}} log
 * @returns {string[]} the kinds restricted
 */
export function preferCodecs(pc, saved, log) {
  const done = [];
  const caps = globalThis.RTCRtpReceiver?.getCapabilities;
  if (!saved || typeof caps !== 'function') return done;
  for (const t of pc.getTransceivers()) {
    const kind = t.sender?.track?.kind ?? t.receiver?.track?.kind;
    const list = saved[kind];
    if (!list?.length || typeof t.setCodecPreferences !== 'function') continue;
    const all = caps.call(globalThis.RTCRtpReceiver, kind)?.codecs ?? [];
    const chosen = [];
    for (const c of list) for (const cap of all) if (!chosen.includes(cap) && sameCodec(c, cap)) chosen.push(cap);
    if (!chosen.some((c) => !HELPERS.test(c.mimeType))) continue;
    try {
      t.setCodecPreferences(chosen);
      done.push(kind);
    } catch (err) {
      log.debug('jsonrtc: setCodecPreferences', err);
    }
  }
  return done;
}
