// Requests never wait forever (issue 13): every request that expects an
// answer fails with 408 after its bound, counted, against a gateway
// (fake) that never answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { connectedSession, serverFrame } from './fakes.js';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

/** Enough of an RTCPeerConnection for an outgoing call's offer. */
class FakePC {
  constructor() {
    this.signalingState = 'stable';
    this.iceGatheringState = 'complete';
    this.localDescription = null;
    this.closed = false;
  }
  addTrack() {}
  getTransceivers() {
    return [];
  }
  async createOffer() {
    return { type: 'offer', sdp: 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n' };
  }
  async setLocalDescription(d) {
    this.localDescription = d;
    this.signalingState = 'have-local-offer';
  }
  addEventListener() {}
  removeEventListener() {}
  close() {
    this.closed = true;
  }
}

const connected = (session) =>
  connectedSession(Session, {
    keepalive: { interval: 100000, period: 400000 },
    rtc: { RTCPeerConnection: FakePC, getUserMedia: async () => ({ getTracks: () => [] }) },
    ...session,
  });

test('timeout: a message send with no answer fails with 408 after the default 30 s, counted, with an event', async () => {
  const { fc, session } = await connected();
  const events = [];
  session.on('requesttimeout', (e) => events.push(e));
  let err;
  session.sendMessage('bob', 'hello?').catch((e) => (err = e));
  fc.advance(29999);
  await flush();
  assert.equal(err, undefined, 'still waiting at 29.999 s');
  fc.advance(1);
  await flush();
  assert.equal(err?.code, 408);
  assert.match(err.reason, /no answer to messaging\/send within 30 s/);
  assert.equal(session.stats.requestTimeouts, 1);
  assert.deepEqual(events.map((e) => `${e.package}.${e.action}`), ['messaging.send']);
  assert.equal(session.state, 'connected', 'the session goes on');
});

test('timeout: bounds per action are configurable (package.action, action, default)', async () => {
  const { fc, session } = await connected({ requestTimeouts: { 'presence.publish': 1000, start: 2000, default: 5000 } });
  assert.equal(session.requestTimeout('presence', 'publish'), 1000);
  assert.equal(session.requestTimeout('presence', 'start'), 2000);
  assert.equal(session.requestTimeout('messaging', 'send'), 5000);
  let pub;
  session.publishPresence({ status: 'open' }).catch((e) => (pub = e));
  const sub = session.watchPresence('bob');
  let subErr;
  sub.ready.catch((e) => (subErr = e));
  fc.advance(1000);
  await flush();
  assert.equal(pub?.code, 408);
  assert.equal(subErr, undefined);
  fc.advance(1000);
  await flush();
  assert.equal(subErr?.code, 408, 'the presence subscribe fails too');
  assert.equal(sub.state, 'ended');
  assert.equal(session.stats.requestTimeouts, 2);
});

test('timeout: an answered request clears its timer', async () => {
  const { fc, ws, session } = await connected();
  const p = session.sendMessage('bob', 'one');
  const req = ws.last();
  ws.receive(serverFrame({ type: 'response', package_type: 'messaging', session_id: 'S1', sequence: 2, correlation_id: req.control.correlation_id, message_state: 'final' }, { action: 'send', response_code: 200 }));
  assert.equal(await p, 200);
  fc.advance(60000);
  await flush();
  assert.equal(session.stats.requestTimeouts, 0);
});

test('timeout: a call start with no answer fails (408, by local) and is cancelled at the gateway; after a ringing, the bound is progress', async () => {
  const { fc, ws, session } = await connected({ requestTimeouts: { progress: 60000 } });
  const call = session.call('bob');
  await flush();
  const start = ws.last();
  assert.equal(start.header.action, 'start');
  const ended = [];
  call.on('ended', (e) => ended.push(e));
  fc.advance(30000);
  await flush();
  assert.equal(call.state, 'failed');
  assert.equal(ended[0].code, 408);
  assert.equal(ended[0].by, 'local');
  const cancel = ws.last();
  assert.equal(cancel.header.action, 'shutdown');
  assert.equal(cancel.control.correlation_id, start.control.correlation_id, 'a cancel of the start');

  // A call that rings waits for the answer up to progress, not default.
  const call2 = session.call('carol');
  await flush();
  const start2 = ws.last();
  fc.advance(20000);
  ws.receive(serverFrame({ type: 'response', package_type: 'call', session_id: 'S1', subsession_id: start2.control.subsession_id, sequence: 2, correlation_id: start2.control.correlation_id, message_state: 'subsequent' }, { action: 'start', response_code: 180 }));
  await flush();
  assert.equal(call2.state, 'alerting');
  fc.advance(59999);
  await flush();
  assert.equal(call2.state, 'alerting', 'ringing for nearly a minute is fine');
  fc.advance(1);
  await flush();
  assert.equal(call2.state, 'failed');
  assert.equal(session.stats.requestTimeouts, 2);
});
