// A fake RTCPeerConnection and a connected session that makes calls with
// it, for the call tests.
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { connectedSession, serverFrame } from './fakes.js';

export const flush = async () => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

export const SDP = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n';

/** Enough of an RTCPeerConnection to offer and answer. */
export class FakePC {
  constructor() {
    this.signalingState = 'stable';
    this.iceGatheringState = 'complete';
    this.iceConnectionState = 'new';
    this.connectionState = 'new';
    this.localDescription = null;
    this.remoteDescription = null;
  }
  addTrack() {}
  getSenders() {
    return [];
  }
  getReceivers() {
    return [];
  }
  getTransceivers() {
    return [];
  }
  async createOffer() {
    return { type: 'offer', sdp: SDP };
  }
  async createAnswer() {
    return { type: 'answer', sdp: SDP };
  }
  async setLocalDescription(d) {
    this.localDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable';
  }
  async setRemoteDescription(d) {
    // A browser applies it later, on its operations chain.
    await new Promise((r) => setImmediate(r));
    if (d.type === 'answer' && this.signalingState !== 'have-local-offer' && this.signalingState !== 'have-remote-pranswer') {
      // As a browser: an answer needs an offer of ours.
      throw new Error(`InvalidStateError: an answer in ${this.signalingState}`);
    }
    this.remoteDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-remote-offer' : d.type === 'pranswer' ? 'have-remote-pranswer' : 'stable';
  }
  async addIceCandidate() {}
  addEventListener() {}
  removeEventListener() {}
  close() {}
}

export const connected = () =>
  connectedSession(Session, {
    keepalive: { interval: 100000, period: 400000 },
    rtc: { RTCPeerConnection: FakePC, getUserMedia: async () => ({ getTracks: () => [] }) },
  });

/** An incoming call on sub, answered and completed. */
export async function established(ws, session, sub, seq) {
  let call;
  const off = session.on('incomingcall', (c) => (call = c));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: sub, sequence: seq, ack_sequence: 1, correlation_id: `s${seq}` }, { action: 'start', initiator: 'bob', target: 'alice' }, { sdp: SDP }));
  off();
  await call.accept();
  await flush();
  ws.receive(serverFrame({ type: 'message', package_type: 'call', session_id: 'S1', subsession_id: sub, sequence: seq + 1, ack_sequence: 1, correlation_id: `s${seq}` }, { action: 'complete' }));
  await flush();
  assert.equal(call.state, 'established');
  return call;
}
