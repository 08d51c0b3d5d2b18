// Attended transfer (docs/protocol.md §5.12): the transferor names its
// consult call, the transferee's new call carries the gateway's token,
// and the target answers the replacing call without ringing and ends the
// call it replaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { connectedSession, serverFrame } from './fakes.js';

const flush = async () => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

const SDP = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n';

/** Enough of an RTCPeerConnection to offer and answer. */
class FakePC {
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
    this.remoteDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable';
  }
  async addIceCandidate() {}
  addEventListener() {}
  removeEventListener() {}
  close() {}
}

const connected = () =>
  connectedSession(Session, {
    keepalive: { interval: 100000, period: 400000 },
    rtc: { RTCPeerConnection: FakePC, getUserMedia: async () => ({ getTracks: () => [] }) },
  });

/** An incoming call on sub, answered and completed. */
async function established(ws, session, sub, seq) {
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

test('attended transfer: transfer(target, {replaces}) names the consult call; a transfer request exposes the token, which the new call carries', async () => {
  const { session, ws } = await connected();
  const b = await established(ws, session, 's1', 2);
  const c = await established(ws, session, 's4', 4);
  b.transfer('carol', { replaces: c }).catch(() => {});
  const tr = ws.last();
  assert.equal(tr.header.action, 'transfer');
  assert.equal(tr.header.refer_to, 'carol');
  assert.equal(tr.header.replaces, 's4');
  await assert.rejects(b.transfer('carol', { replaces: b }), TypeError);

  let req;
  b.on('transfer', (r) => (req = r));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 6, ack_sequence: 1, correlation_id: 's6' }, { action: 'transfer', refer_to: 'dave', replaces: 'cid;to-tag=1;from-tag=2' }));
  assert.equal(req.replaces, 'cid;to-tag=1;from-tag=2');
  req.accept();
  const n = session.call(req.referTo, { replaces: req.replaces });
  await flush();
  const start = ws.sent.filter((t) => t !== 'ping').map((t) => JSON.parse(t)).find((f) => f.header.action === 'start' && f.control.subsession_id === n.id);
  assert.equal(start.header.replaces, 'cid;to-tag=1;from-tag=2');
  assert.equal(start.header.target, 'dave');
});

test('attended transfer: a start replacing an established call is answered without ringing, and the replaced call ends', async () => {
  const { session, ws } = await connected();
  const old = await established(ws, session, 's1', 2);
  let call;
  session.on('incomingcall', (c) => (call = c));
  const before = ws.sent.length;
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's9', sequence: 4, ack_sequence: 1, correlation_id: 's4' }, { action: 'start', initiator: 'carol', target: 'alice', replaces: 's1' }, { sdp: SDP }));
  assert.equal(call.replaces, 's1');
  assert.equal(call.replacedCall, old);
  await flush();
  const out = ws.sent.slice(before).filter((t) => t !== 'ping').map((t) => JSON.parse(t)).filter((f) => f.control.type !== 'acknowledgement');
  assert.deepEqual(
    out.map((f) => `${f.control.type}/${f.header.action}/${f.header.response_code ?? ''}/${f.control.subsession_id}`),
    ['response/start/200/s9', 'message/shutdown//s1'],
    'answered at once, no 180; then the old call hung up',
  );
  assert.equal(old.state, 'ended');
  assert.equal(call.state, 'connecting');

  // A replaces naming no call of ours rings as usual.
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's10', sequence: 5, ack_sequence: 1, correlation_id: 's5' }, { action: 'start', initiator: 'carol', target: 'alice', replaces: 'nope' }, { sdp: SDP }));
  await flush();
  assert.equal(call.id, 's10');
  assert.equal(call.state, 'ringing');
  assert.equal(ws.last().header.response_code, 180);
});
