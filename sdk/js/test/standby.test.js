// Standby (docs/protocol.md §4.9): the client registers how to wake it,
// closes its socket, and resumes when woken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { connectedSession, serverFrame } from './fakes.js';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const sub = { endpoint: 'https://fcm.googleapis.com/fcm/send/x', keys: { p256dh: 'BCVx', auth: 'BTBZ' } };

class FakeDocument extends EventTarget {
  constructor() {
    super();
    this.visibilityState = 'visible';
  }
  show(state) {
    this.visibilityState = state;
    this.dispatchEvent(new Event('visibilitychange'));
  }
}

const connected = (session) => connectedSession(Session, session);

/** Answers the standby request on ws with 200 and the expiry. */
function answerStandby(ws, seq = 2) {
  const req = ws.last();
  assert.equal(req.header.action, 'standby');
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: seq, correlation_id: req.control.correlation_id, message_state: 'final' }, { action: 'standby', response_code: 200, expiry: 3600 }));
  return req;
}

test('standby: request/standby with the push channel, then the socket closes (4100) and nothing runs until wake()', async () => {
  const { fc, sockets, storage, session } = await connected();
  const p = session.standby({ toJSON: () => sub });
  const req = answerStandby(sockets[0]);
  assert.deepEqual(req.payload, { push: { type: 'webpush', ...sub } });
  assert.equal(req.control.package_type, 'register');
  assert.equal(await p, 3600);
  assert.equal(sockets[0].closed.code, 4100);
  assert.equal(session.state, 'standby');
  assert.ok(storage.getItem('jsonrtc.session'), 'kept for a page the push reopens');
  const sent = sockets[0].sent.length;
  fc.advance(60000);
  await flush();
  assert.equal(sockets.length, 1, 'no reconnect while asleep');
  assert.equal(sockets[0].sent.length, sent, 'no ping while asleep');

  session.wake();
  await flush();
  assert.equal(session.state, 'reconnecting');
  const ws = sockets[1];
  ws.open();
  const resume = ws.last();
  assert.equal(resume.control.session_id, 'S1');
  assert.equal(resume.header.action, 'connect');
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 3 }, { action: 'connect', initiator: 'alice@example.com', sslr: 2 }));
  await flush();
  assert.equal(session.state, 'resumed');
});

test('standby: refused while a call is up; sending a message wakes the session; a webhook token is a webhook channel', async () => {
  const { sockets, session } = await connected();
  sockets[0].receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 2, correlation_id: 's2' }, { action: 'start', initiator: 'bob', target: 'alice' }, { sdp: 'v=0\r\n' }));
  await assert.rejects(session.standby(sub), (e) => e.code === 405);
  for (const c of [...session.calls.values()]) c.decline();

  const p = session.standby({ token: 'device-1' });
  const req = answerStandby(sockets[0], 3);
  assert.deepEqual(req.payload.push, { type: 'webhook', token: 'device-1' });
  await p;
  session.sendMessage('bob', 'hi').catch(() => {});
  await flush();
  assert.equal(session.state, 'reconnecting', 'a send wakes it');
  assert.equal(sockets.length, 2);
});

test('standby: automatic with the page hidden and nothing under way; awake when it shows', async () => {
  const doc = new FakeDocument();
  const { sockets, session } = await connected({ standby: { auto: true, push: async () => sub, document: doc } });
  doc.show('hidden');
  await flush();
  answerStandby(sockets[0]);
  await flush();
  assert.equal(session.state, 'standby');
  doc.show('visible');
  await flush();
  assert.equal(session.state, 'reconnecting');
  assert.equal(sockets.length, 2);
});

/** Puts a connected session to standby (socket 0 closed 4100). */
async function asleep(options) {
  const env = await connected(options);
  const p = env.session.standby({ toJSON: () => sub });
  answerStandby(env.sockets[0]);
  await p;
  return env;
}

test('close() in standby logs out at the gateway: a resume on a socket of its own, closed 1000 once answered', async () => {
  const { sockets, storage, session } = await asleep();
  let done = false;
  const p = session.close().then(() => (done = true));
  assert.equal(session.state, 'closed', 'closed for the application at once');
  assert.equal(storage.getItem('jsonrtc.session'), null);
  await flush();
  assert.equal(sockets.length, 2, 'one socket for the logout');
  const ws = sockets[1];
  ws.open();
  const resume = ws.last();
  assert.equal(resume.header.action, 'connect');
  assert.equal(resume.control.session_id, 'S1');
  assert.equal(resume.header.cslr, 2, 'the resume carries the session state, as any resume');
  assert.equal(ws.closed, null, 'nothing closed before the gateway answers: a close before the attach logs nothing out');
  // What the gateway retained for the session (an incoming call) comes
  // after the answer; the logout closes anyway and the gateway ends it.
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 3 }, { action: 'connect', initiator: 'alice@example.com', sslr: 2 }));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 4, correlation_id: 's4' }, { action: 'start', initiator: 'bob', target: 'alice' }, { sdp: 'v=0\r\n' }));
  await p;
  assert.ok(done);
  assert.deepEqual(ws.closed, { code: 1000, reason: 'logout' });
  assert.equal(session.calls.size, 0, 'the retained call never rang');
  assert.equal(sockets.length, 2, 'no reconnect after the logout');
});

test('close() in standby: a refused resume (a new session) is closed 1000 too; an unreachable gateway is given up after the attempt timeout', async () => {
  {
    const { sockets, session } = await asleep();
    const p = session.close();
    await flush();
    sockets[1].open();
    sockets[1].receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S2', sequence: 1 }, { action: 'connect', initiator: 'alice@example.com' }));
    await p;
    assert.equal(sockets[1].closed.code, 1000, 'the new session the gateway opened ends as well');
  }
  {
    const { fc, sockets, session } = await asleep({ reconnect: { attemptTimeout: 3000 } });
    let done = false;
    const p = session.close().then(() => (done = true));
    await flush();
    sockets[1].open();
    fc.advance(2999);
    await flush();
    assert.equal(done, false);
    fc.advance(1);
    await p;
    assert.equal(sockets[1].closed.code, 4001, 'given up: not a logout of anything');
    assert.equal(sockets.length, 2);
  }
});

test('close() of a connected session closes its socket 1000 and opens no other', async () => {
  const { sockets, session } = await connected();
  await session.close();
  assert.equal(sockets[0].closed.code, 1000);
  assert.equal(sockets.length, 1);
});
