/**
 * The few SDP facts the SDK needs. SDP is never rewritten: directions are
 * set through RTCRtpTransceiver.direction (the modern API), and these
 * helpers only read.
 */

/**
 * The `o=` session id of an SDP (changes when the peer built a new
 * RTCPeerConnection, e.g. after a page reload).
 * @param {string} sdp
 * @returns {string|null}
 */
export function originSessionId(sdp) {
  const m = /^o=\S+ (\S+) /m.exec(sdp || '');
  return m ? m[1] : null;
}

/**
 * Whether the SDP announces trickle ICE (RFC 8840, a=ice-options:trickle):
 * its sender takes candidates after the offer or answer.
 * @param {string|undefined|null} sdp
 */
export function announcesTrickle(sdp) {
  return /^a=ice-options:.*\btrickle\b/m.test(sdp ?? '');
}

/**
 * The media kinds an SDP offers: the media of its m= lines whose port is
 * not 0 (a rejected or removed stream, RFC 3264 section 5.1), each once,
 * in order of appearance (e.g. ['audio', 'video']).
 * @param {string} sdp
 * @returns {string[]}
 */
export function mediaKinds(sdp) {
  const kinds = [];
  for (const m of (sdp || '').matchAll(/^m=(\S+) (\d+)/gm)) {
    if (m[2] !== '0' && !kinds.includes(m[1])) kinds.push(m[1]);
  }
  return kinds;
}

/**
 * The media directions of an SDP, one per m= section (the session-level
 * direction applies where a section has none).
 * @param {string} sdp
 * @returns {string[]} 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive'
 */
export function mediaDirections(sdp) {
  const lines = (sdp || '').split(/\r?\n/);
  let session = 'sendrecv';
  const out = [];
  let cur = null;
  for (const line of lines) {
    if (line.startsWith('m=')) {
      if (cur !== null) out.push(cur.dir ?? session);
      cur = { dir: line.split(' ')[1] === '0' ? 'inactive' : null };
      continue;
    }
    const m = /^a=(sendrecv|sendonly|recvonly|inactive)$/.exec(line);
    if (!m) continue;
    if (cur === null) session = m[1];
    else if (cur.dir === null) cur.dir = m[1];
  }
  if (cur !== null) out.push(cur.dir ?? session);
  return out;
}

/**
 * Whether an offer puts the receiver on hold: every media section is
 * sendonly or inactive (RFC 3264 section 8.4).
 * @param {string} sdp
 * @returns {boolean}
 */
export function isHoldOffer(sdp) {
  const dirs = mediaDirections(sdp);
  return dirs.length > 0 && dirs.every((d) => d === 'sendonly' || d === 'inactive');
}

/**
 * Builds the `payload.candidates` SDP fragment of a `trickle` message
 * (RFC 8840 style): per mid an `a=mid:` line and its `a=candidate:` lines,
 * and `a=end-of-candidates` when gathering has finished.
 * @param {{candidate: string, sdpMid: string|null}[]} candidates
 * @param {boolean} [end]
 * @param {string[]} [mids] mids to end when there are no candidates
 * @returns {string}
 */
export function candidatesToFragment(candidates, end = false, mids = []) {
  /** @type {Map<string, string[]>} */
  const byMid = new Map();
  for (const m of mids) byMid.set(m, []);
  for (const c of candidates) {
    const mid = c.sdpMid ?? '0';
    if (!byMid.has(mid)) byMid.set(mid, []);
    if (c.candidate) {
      const line = c.candidate.startsWith('a=') ? c.candidate : 'a=' + c.candidate;
      byMid.get(mid).push(line);
    }
  }
  let out = '';
  for (const [mid, lines] of byMid) {
    out += `a=mid:${mid}\r\n`;
    for (const l of lines) out += l + '\r\n';
    if (end) out += 'a=end-of-candidates\r\n';
  }
  return out;
}

/**
 * Parses a trickle fragment into RTCIceCandidateInit objects. An
 * `a=end-of-candidates` line gives an end-of-candidates marker for its mid
 * (candidate '').
 * @param {string} fragment
 * @returns {{candidate: string, sdpMid: string}[]}
 */
export function fragmentToCandidates(fragment) {
  const out = [];
  let mid = null;
  for (const raw of (fragment || '').split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('a=mid:')) {
      mid = line.slice(6);
      continue;
    }
    if (line === 'a=end-of-candidates') {
      if (mid !== null) out.push({ candidate: '', sdpMid: mid });
      continue;
    }
    const cand = line.startsWith('a=candidate:') ? line.slice(2) : line.startsWith('candidate:') ? line : null;
    if (cand && mid !== null) out.push({ candidate: cand, sdpMid: mid });
  }
  return out;
}
