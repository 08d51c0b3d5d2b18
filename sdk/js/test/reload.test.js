import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { FakeClock, FakeStorage, fakeWebSocketClass, serverFrame } from './fakes.js';

// A page reload during an established call (sdk/js README, "Calls across
// a page reload"), with a fake RTCPeerConnection and microphone.

const flush = () => new Promise((r) => setImmediate(r));

const OFFER = 'v=0\r\no=- 42 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=sendrecv\r\n';

class FakeTrack {
  constructor(kind) {
    this.kind = kind;
    this.enabled = true;
    this.readyState = 'live';
  }
  stop() {
    this.readyState = 'ended';
  }
}

class FakeStream {
  constructor(tracks = []) {
    this.tracks = tracks;
  }
  getTracks() {
    return this.tracks;
  }
}

class FakePeerConnection {
  static made = [];
  constructor(config) {
    this.config = config;
    this.transceivers = [];
    this.closed = false;
    this.signalingState = 'stable';
    this.iceGatheringState = 'new';
    this.localDescription = null;
    this.remoteDescription = null;
    FakePeerConnection.made.push(this);
  }
  addTransceiver(kind, init) {
    const t = {
      mid: String(this.transceivers.length),
      direction: init.direction,
      receiver: { track: { kind } },
      sender: {
        track: null,
        async replaceTrack(track) {
          this.track = track;
        },
        getParameters: () => ({ codecs: [] }),
      },
    };
    this.transceivers.push(t);
    return t;
  }
  addTrack(track) {
    const t = this.addTransceiver(track.kind, { direction: 'sendrecv' });
    t.sender.track = track;
    return t.sender;
  }
  getTransceivers() {
    return this.transceivers;
  }
  getSenders() {
    return this.transceivers.map((t) => t.sender);
  }
  async createOffer() {
    return { type: 'offer', sdp: OFFER };
  }
  async createAnswer() {
    return { type: 'answer', sdp: OFFER };
  }
  async setLocalDescription(d) {
    this.localDescription = d;
    this.signalingState = d.type === 'answer' ? 'stable' : 'have-local-offer';
    // FakePeerConnection.gathering: gathering goes on until the test ends it.
    this.iceGatheringState = FakePeerConnection.gathering ? 'gathering' : 'complete';
  }
  async setRemoteDescription(d) {
    this.remoteDescription = d;
    this.signalingState = 'stable';
  }
  addEventListener() {}
  removeEventListener() {}
  close() {
    this.closed = true;
  }
}

/**
 * A page with an established call to bob went away (stored session S1);
 * a new page builds its Session on the same storage, with a microphone
 * that answers when the test says.
 */
async function reloadedPage(state = 'established', saved = {}) {
  FakePeerConnection.made = [];
  globalThis.MediaStream ??= FakeStream;
  const storage = new FakeStorage();
  const { FakeWebSocket: WS1, sockets: s1 } = fakeWebSocketClass();
  const common = { url: 'ws://127.0.0.1:1/ws/', identity: 'alice', clock: new FakeClock().clock, storage };
  const first = new Session({ ...common, WebSocket: WS1 });
  const p1 = first.connect();
  await flush();
  s1[0].open();
  s1[0].receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: 1, message_state: 'final' }, { action: 'connect', initiator: 'alice@example.com', response_code: 200 }));
  await p1;
  const stored = JSON.parse(storage.getItem('jsonrtc.session'));
  stored.calls = [
    { id: 'call-1', direction: 'outgoing', caller: 'alice@example.com', callee: 'bob', state, video: false, held: false, remoteHeld: false, muted: false, establishedAt: state === 'established' ? 1 : null, startCorrelation: 'c2', ...saved },
  ];
  storage.setItem('jsonrtc.session', JSON.stringify(stored));

  let answerMic;
  const mic = new Promise((r) => (answerMic = r));
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const session = new Session({ ...common, WebSocket: FakeWebSocket, rtc: { RTCPeerConnection: FakePeerConnection, getUserMedia: () => mic } });
  const restored = [];
  session.on('callrestored', (c) => restored.push(c));
  const connected = session.connect();
  await flush();
  return { session, sockets, restored, connected, answerMic };
}

/** Opens the reloaded page's socket and answers its resume; returns the socket. */
async function resumed(page) {
  const ws = page.sockets[0];
  ws.open();
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 2, ack_sequence: 1 }, { action: 'connect', initiator: 'alice@example.com', sslr: 1 }));
  await page.connected;
  await flush();
  return ws;
}

const callFrames = (ws) => ws.frames().filter((f) => f.control.package_type === 'call');

test('page reload: the call\'s offer is built while the session resumes and leaves with the resume, before the microphone answers', async () => {
  const page = await reloadedPage();
  assert.equal(FakePeerConnection.made.length, 1, 'the peer connection is built before the socket opens');
  const pc = FakePeerConnection.made[0];
  assert.deepEqual(pc.transceivers.map((t) => [t.receiver.track.kind, t.direction]), [['audio', 'sendrecv']]);
  const ws = page.sockets[0];
  ws.open();
  assert.equal(ws.last().header.action, 'connect');
  assert.deepEqual(callFrames(ws), [], 'nothing of the call before the resume');
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 2, ack_sequence: 1 }, { action: 'connect', initiator: 'alice@example.com', sslr: 1 }));
  await page.connected;
  await flush();
  assert.equal(page.restored.length, 1);
  const [offer] = callFrames(ws);
  assert.equal(offer?.header.action, 'start', 'the re-offer leaves with the resume');
  assert.equal(offer.control.subsession_id, 'call-1');
  assert.equal(offer.payload.sdp, OFFER);
  assert.equal(pc.transceivers[0].sender.track, null, 'the microphone has not answered yet');
  const track = new FakeTrack('audio');
  page.answerMic(new FakeStream([track]));
  await flush();
  assert.equal(pc.transceivers[0].sender.track, track, 'the microphone joins the offered transceiver');
  assert.equal(page.restored[0].localStream.getTracks()[0], track);
});

test('page reload: a failed resume ends the prepared call, closes its peer connection and its microphone', async () => {
  const page = await reloadedPage();
  const pc = FakePeerConnection.made[0];
  const track = new FakeTrack('audio');
  page.answerMic(new FakeStream([track]));
  await flush();
  const ws = page.sockets[0];
  ws.open();
  // A new session id: the gateway no longer had S1 (docs/protocol.md §4.5).
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S2', sequence: 1, ack_sequence: 1 }, { action: 'connect', initiator: 'alice@example.com', response_code: 200 }));
  await page.connected;
  await flush();
  assert.equal(page.restored.length, 0);
  assert.equal(page.session.calls.size, 0);
  assert.equal(pc.closed, true);
  assert.equal(track.readyState, 'ended');
  assert.deepEqual(callFrames(ws), []);
});

test('page reload while an outgoing call rings: its re-offer is built while it rings and leaves with the complete of the answer', async () => {
  const page = await reloadedPage('alerting');
  assert.equal(FakePeerConnection.made.length, 1, 'the peer connection is built at once, not after the answer');
  const pc = FakePeerConnection.made[0];
  page.answerMic(new FakeStream([new FakeTrack('audio')]));
  const ws = await resumed(page);
  assert.deepEqual(callFrames(ws), [], 'nothing while it rings');
  const call = page.session.calls.get('call-1');
  assert.equal(call.state, 'alerting');
  // bob answers the offer of the page that went.
  ws.receive(serverFrame({ type: 'response', package_type: 'call', session_id: 'S1', subsession_id: 'call-1', sequence: 3, correlation_id: 'c2', message_state: 'final' }, { action: 'start', response_code: 200 }, { sdp: OFFER }));
  await flush();
  await flush();
  const frames = callFrames(ws);
  assert.deepEqual(frames.map((f) => [f.control.type, f.header.action ?? null]), [['message', 'complete'], ['request', 'start']], 'the complete, then the prepared re-offer at once');
  assert.equal(frames[0].control.correlation_id, 'c2');
  assert.equal(frames[1].payload.sdp, OFFER);
  assert.equal(call.state, 'established');
  assert.equal(FakePeerConnection.made.length, 1, 'no other peer connection');
  assert.equal(call.peerConnection, pc);
});

test('page reload: toward a far end that trickles, the re-offer leaves with the resume without waiting for ICE gathering; the later candidates trickle after the exchange', async () => {
  FakePeerConnection.gathering = true;
  try {
    const page = await reloadedPage('established', { trickles: true });
    const pc = FakePeerConnection.made[0];
    const ws = await resumed(page);
    assert.equal(pc.iceGatheringState, 'gathering');
    const [offer] = callFrames(ws);
    assert.equal(offer?.header.action, 'start', 'the re-offer left while gathering went on');
    // A candidate gathered now waits for the end of the exchange.
    pc.onicecandidate({ candidate: { candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host', sdpMid: '0' } });
    assert.equal(callFrames(ws).length, 1, 'no trickle before the answer');
    const answer = 'v=0\r\no=- 7 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=sendrecv\r\n';
    ws.receive(serverFrame({ type: 'response', package_type: 'call', session_id: 'S1', subsession_id: 'call-1', sequence: 3, correlation_id: offer.control.correlation_id, message_state: 'final' }, { action: 'start', response_code: 200 }, { sdp: answer }));
    await flush();
    await flush();
    const after = callFrames(ws).slice(1).map((f) => f.header.action);
    assert.deepEqual(after, ['complete', 'trickle'], 'the candidate trickles once the exchange is over');
    assert.match(callFrames(ws)[2].payload.candidates, /192\.0\.2\.1 50000/);
  } finally {
    FakePeerConnection.gathering = false;
  }
});

test('page reload: toward a far end that does not trickle (a SIP phone), the re-offer waits for ICE gathering', async () => {
  FakePeerConnection.gathering = true;
  try {
    const page = await reloadedPage('established');
    const ws = await resumed(page);
    assert.deepEqual(callFrames(ws), [], 'the offer waits for its candidates');
    page.session.close();
  } finally {
    FakePeerConnection.gathering = false;
  }
});

test('the far end reloaded: its re-offer from a new connection that trickles is answered before our ICE gathering ends', async () => {
  const page = await reloadedPage('established');
  page.answerMic(new FakeStream([new FakeTrack('audio')]));
  const ws = await resumed(page);
  const [offer] = callFrames(ws);
  const sdp = (origin, trickle) => `v=0\r\no=- ${origin} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n${trickle ? 'a=ice-options:trickle\r\n' : ''}m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=sendrecv\r\n`;
  ws.receive(serverFrame({ type: 'response', package_type: 'call', session_id: 'S1', subsession_id: 'call-1', sequence: 3, correlation_id: offer.control.correlation_id, message_state: 'final' }, { action: 'start', response_code: 200 }, { sdp: sdp(7, true) }));
  await flush();
  await flush();
  FakePeerConnection.gathering = true;
  try {
    // bob reloads: his re-offer comes from a new connection (o= 8).
    ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 'call-1', sequence: 4, correlation_id: 's4' }, { action: 'start' }, { sdp: sdp(8, true) }));
    for (let i = 0; i < 4; i++) await flush();
    const answer = callFrames(ws).find((f) => f.control.type === 'response' && f.control.correlation_id === 's4');
    assert.ok(answer, 'answered while gathering goes on');
    assert.equal(FakePeerConnection.made.length, 2, 'a new connection for his');
    assert.equal(FakePeerConnection.made[1].iceGatheringState, 'gathering');
  } finally {
    FakePeerConnection.gathering = false;
    page.session.close();
  }
});
