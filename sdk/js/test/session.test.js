import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { Subscription } from '../src/subscription.js';
import { parseMessageSummary } from '../src/summary.js';
import { newSession, opensAfter, serverFrame } from './fakes.js';

const flush = () => new Promise((r) => setImmediate(r));

function setup(opts = {}) {
  return newSession(Session, {
    storage: opts.storage,
    reconnect: { initial: 100, max: 1000, jitter: 0, timeout: 10000, attemptTimeout: 3000 },
    ...opts.session,
  });
}

/** Connects the session: the server answers connect with session S1. */
async function connected(opts) {
  const env = setup(opts);
  const p = env.session.connect();
  await flush();
  const ws = env.sockets[0];
  ws.open();
  const connect = ws.last();
  ws.receive(
    serverFrame(
      { type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: connect.control.sequence, message_state: 'final' },
      { action: 'connect', initiator: 'alice@example.com', response_code: 200 },
    ),
  );
  await p;
  return { ...env, ws };
}

test('connect: request/connect with sequence 1 and the open-mode identity; adopts id and identity', async () => {
  const env = setup();
  const states = [];
  env.session.on('state', (s) => states.push(s.state));
  const p = env.session.connect();
  await flush();
  const ws = env.sockets[0];
  assert.deepEqual(ws.protocols, ['jsonrtc']);
  assert.equal(ws.url, 'ws://127.0.0.1:1/ws/');
  ws.open();
  assert.deepEqual(ws.last(), {
    control: { type: 'request', package_type: 'register', version: '1.0', sequence: 1 },
    header: { action: 'connect', initiator: 'alice', target: 'alice' },
  });
  ws.receive(
    serverFrame(
      { type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: 1, message_state: 'final' },
      { action: 'connect', initiator: 'alice@example.com', response_code: 200 },
    ),
  );
  await p;
  assert.equal(env.session.id, 'S1');
  assert.equal(env.session.identity, 'alice@example.com');
  assert.deepEqual(states, ['connecting', 'connected']);
});

test('token goes in the access_token query parameter', async () => {
  const env = setup({ session: { token: 'abc.def', identity: undefined } });
  env.session.connect().catch(() => {});
  await flush();
  assert.equal(env.sockets[0].url, 'ws://127.0.0.1:1/ws/?access_token=abc.def');
  env.sockets[0].open();
  assert.deepEqual(env.sockets[0].last().header, { action: 'connect' }, 'no initiator without an identity');
});

test('connect error fails the session and rejects connect()', async () => {
  const env = setup();
  const p = env.session.connect();
  await flush();
  env.sockets[0].open();
  env.sockets[0].receive(serverFrame({ type: 'error', package_type: 'register', sequence: 1, ack_sequence: 1 }, { action: 'connect', error_code: 403, reason: 'Forbidden' }));
  await assert.rejects(p, (e) => e.code === 403);
  assert.equal(env.session.state, 'failed');
  assert.equal(env.sockets[0].closed.code, 1000);
});

test('a connect refused for now (error 503, close 1013) is tried again after the backoff on a new socket, from sequence 1', async () => {
  const env = setup();
  const p = env.session.connect();
  await flush();
  env.sockets[0].open();
  env.sockets[0].receive(serverFrame({ type: 'error', package_type: 'register', ack_sequence: 1 }, { action: 'connect', error_code: 503, reason: 'session admission failed' }));
  assert.equal(env.sockets[0].closed.code, 4001);
  assert.equal(env.session.state, 'connecting');
  env.fc.advance(99);
  await flush();
  assert.equal(env.sockets.length, 1, 'not asked again at once');
  env.fc.advance(1);
  await flush();
  assert.equal(env.sockets.length, 2);
  env.sockets[1].open();
  env.sockets[1].drop(1013);
  env.fc.advance(199);
  await flush();
  assert.equal(env.sockets.length, 2, 'the backoff doubles');
  env.fc.advance(1);
  await flush();
  const ws = env.sockets[2];
  ws.open();
  assert.equal(ws.last().control.sequence, 1);
  assert.equal(ws.last().control.session_id, undefined);
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: 1, message_state: 'final' }, { action: 'connect', initiator: 'alice@example.com', response_code: 200 }));
  await p;
  assert.equal(env.session.state, 'connected');
  assert.equal(env.session.id, 'S1');
});

test('a refusal\'s retry_after is the least wait before the next attempt, of a connect and of a resume', async () => {
  const env = setup();
  const p = env.session.connect();
  await flush();
  env.sockets[0].open();
  env.sockets[0].receive(serverFrame({ type: 'error', package_type: 'register', ack_sequence: 1 }, { action: 'connect', error_code: 503, reason: 'session admission failed', retry_after: 2 }));
  await opensAfter(env, 2000, flush, 'the connect (the backoff says 100 ms)');
  env.sockets[1].open();
  env.sockets[1].receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: 1, message_state: 'final' }, { action: 'connect', initiator: 'alice@example.com', response_code: 200 }));
  await p;
  env.sockets[1].drop(1006);
  env.fc.advance(0);
  await flush();
  assert.equal(env.sockets.length, 3, 'the resume');
  env.sockets[2].open();
  env.sockets[2].receive(serverFrame({ type: 'error', package_type: 'register' }, { action: 'connect', error_code: 503, reason: 'shutting down', retry_after: 2 }));
  await opensAfter(env, 2000, flush, 'the resume');
});

test('a connect refused for now fails after reconnect.connectAttempts', async () => {
  const env = setup({ session: { reconnect: { initial: 100, max: 1000, jitter: 0, connectAttempts: 3 } } });
  const p = env.session.connect();
  const failed = assert.rejects(p, (e) => e.code === 503);
  for (let i = 0; i < 3; i++) {
    await flush();
    env.sockets[i].open();
    env.sockets[i].receive(serverFrame({ type: 'error', package_type: 'register', ack_sequence: 1 }, { action: 'connect', error_code: 503, reason: 'too many sessions' }));
    env.fc.advance(1000);
  }
  await failed;
  assert.equal(env.sockets.length, 3);
  assert.equal(env.session.state, 'failed');
});

test('connect challenge: authorize answers a 401 with a new connect (sequence 2) carrying its authorization', async () => {
  const seen = [];
  const env = setup({ session: { authorize: (ch) => (seen.push(ch), { username: 'alice', realm: ch.realm, ha1: 'deadbeef' }) } });
  const p = env.session.connect();
  await flush();
  const ws = env.sockets[0];
  ws.open();
  const authenticate = { scheme: 'Digest', realm: 'example.com', nonce: 'n1', qop: 'auth', method: 'REGISTER', uri: 'sip:example.com' };
  ws.receive(serverFrame({ type: 'error', package_type: 'register', ack_sequence: 1, correlation_id: 'c1' }, { action: 'connect', error_code: 401, reason: 'Unauthorized', authenticate }));
  await flush();
  assert.deepEqual(seen, [authenticate]);
  assert.deepEqual(ws.last(), {
    control: { type: 'request', package_type: 'register', version: '1.0', sequence: 2 },
    header: { action: 'connect', authorization: { username: 'alice', realm: 'example.com', ha1: 'deadbeef' }, initiator: 'alice', target: 'alice' },
  });
  ws.receive(
    serverFrame(
      { type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: 2, message_state: 'final' },
      { action: 'connect', initiator: 'alice@example.com', response_code: 200 },
    ),
  );
  await p;
  assert.equal(env.session.state, 'connected');
});

test('live challenge: request/authenticate is answered by authorize with response/authenticate, same correlation_id', async () => {
  const seen = [];
  const env = await connected({ session: { authorize: async (ch) => (seen.push(ch), { username: 'alice', realm: ch.realm, nonce: ch.nonce, response: 'r1', cnonce: 'cn', nc: '00000001', uri: ch.uri, qop: 'auth' }) } });
  const authenticate = { scheme: 'Digest', realm: 'example.com', nonce: 'n2', qop: 'auth', method: 'REGISTER', uri: 'sip:example.com' };
  env.ws.receive(serverFrame({ type: 'request', package_type: 'register', session_id: 'S1', sequence: 2, correlation_id: 'auth1' }, { action: 'authenticate', initiator: 'alice@example.com', target: 'alice@example.com', authenticate }));
  await flush();
  assert.deepEqual(seen, [authenticate]);
  const out = env.ws.last();
  assert.equal(out.control.type, 'response');
  assert.equal(out.control.package_type, 'register');
  assert.equal(out.control.correlation_id, 'auth1');
  assert.equal(out.control.message_state, 'final');
  assert.deepEqual(out.header, { action: 'authenticate', response_code: 200, authorization: { username: 'alice', realm: 'example.com', nonce: 'n2', response: 'r1', cnonce: 'cn', nc: '00000001', uri: 'sip:example.com', qop: 'auth' } });
  assert.equal(env.session.state, 'connected');
});

test('live challenge without authorize: error/authenticate 401', async () => {
  const env = await connected();
  env.ws.receive(serverFrame({ type: 'request', package_type: 'register', session_id: 'S1', sequence: 2, correlation_id: 'auth1' }, { action: 'authenticate', authenticate: { realm: 'example.com', nonce: 'n' } }));
  await flush();
  const out = env.ws.last();
  assert.equal(out.control.type, 'error');
  assert.equal(out.control.correlation_id, 'auth1');
  assert.deepEqual(out.header, { action: 'authenticate', error_code: 401, reason: 'no credentials' });
});

test('messaging: request/send, resolved by the response; incoming send answered 200', async () => {
  const { session, ws } = await connected();
  const p = session.sendMessage('bob', 'hello');
  const req = ws.last();
  assert.equal(req.control.type, 'request');
  assert.equal(req.control.package_type, 'messaging');
  assert.equal(req.control.session_id, 'S1');
  assert.equal(req.control.sequence, 2);
  assert.equal(req.control.correlation_id, 'c2');
  assert.equal(req.control.ack_sequence, 1);
  assert.deepEqual(req.header, { action: 'send', initiator: 'alice@example.com', target: 'bob' });
  assert.deepEqual(req.payload, { content_type: 'text/plain', body: 'hello' });
  ws.receive(serverFrame({ type: 'response', package_type: 'messaging', session_id: 'S1', subsession_id: req.control.subsession_id, sequence: 2, ack_sequence: 2, correlation_id: 'c2', message_state: 'final' }, { action: 'send', response_code: 200 }));
  assert.equal(await p, 200);

  const got = [];
  session.on('message', (m) => got.push(m));
  ws.receive(serverFrame({ type: 'request', package_type: 'messaging', session_id: 'S1', subsession_id: 's9', sequence: 3, ack_sequence: 2, correlation_id: 's3' }, { action: 'send', initiator: 'bob@example.com', target: 'alice@example.com' }, { content_type: 'text/plain', body: 'hi' }));
  assert.equal(got.length, 1);
  assert.equal(got[0].from, 'bob@example.com');
  assert.equal(got[0].body, 'hi');
  const resp = ws.last();
  assert.equal(resp.control.type, 'response');
  assert.equal(resp.control.correlation_id, 's3');
  assert.equal(resp.control.subsession_id, 's9');
  assert.equal(resp.control.ack_sequence, 3);
  assert.equal(resp.header.response_code, 200);
});

test('errors reject the request with the protocol code', async () => {
  const { session, ws } = await connected();
  const p = session.sendMessage('nobody', 'x');
  const req = ws.last();
  ws.receive(serverFrame({ type: 'error', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 2, correlation_id: req.control.correlation_id }, { action: 'send', error_code: 404, reason: 'Not Found' }));
  await assert.rejects(p, (e) => e.code === 404 && e.reason === 'Not Found');
});

test('standalone acknowledgement after 200 ms with nothing else to send', async () => {
  const { session, ws, fc } = await connected();
  const before = ws.frames().length;
  fc.advance(199);
  assert.equal(ws.frames().length, before, 'the connect response alone: ack after 200 ms');
  fc.advance(1);
  assert.deepEqual(ws.last(), { control: { type: 'acknowledgement', package_type: 'register', session_id: 'S1', version: '1.0', ack_sequence: 1 } });
  // A frame sent within 200 ms carries the ack instead.
  ws.receive(serverFrame({ type: 'message', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 1 }, { action: 'send' }));
  fc.advance(50);
  session.sendMessage('bob', 'x').catch(() => {});
  assert.equal(ws.last().control.ack_sequence, 2);
  const n = ws.frames().length;
  fc.advance(500);
  assert.equal(ws.frames().length, n, 'no acknowledgement when nothing is owed');
});

test('duplicate inbound frames are dropped but acknowledged', async () => {
  const { session, ws, fc } = await connected();
  const got = [];
  session.on('message', (m) => got.push(m.body));
  const f = serverFrame({ type: 'request', package_type: 'messaging', session_id: 'S1', subsession_id: 's1', sequence: 2, ack_sequence: 1, correlation_id: 's2' }, { action: 'send', initiator: 'bob' }, { body: 'once' });
  ws.receive(f);
  ws.receive(f);
  assert.deepEqual(got, ['once']);
  assert.equal(ws.frames().filter((x) => x.control.type === 'response').length, 1);
});

test('socket loss: reconnect with backoff, resume with cslr/cslw/csuw, resend above sslr, then resumed', async () => {
  const { session, ws, fc, sockets } = await connected();
  const states = [];
  session.on('state', (s) => states.push(s.state));
  // Two messages out (2, 3) and one frame in (2) before the loss.
  session.sendMessage('bob', 'one').catch(() => {});
  session.sendMessage('bob', 'two').catch(() => {});
  ws.receive(serverFrame({ type: 'message', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 1 }, { action: 'send' }));
  ws.drop(1006);
  assert.equal(session.state, 'reconnecting');
  // A frame made while reconnecting is numbered and retained.
  session.sendMessage('bob', 'three').catch(() => {});
  fc.advance(0);
  await flush();
  assert.equal(sockets.length, 2, 'first attempt is immediate');
  sockets[1].drop(1006); // refused
  fc.advance(99);
  await flush();
  assert.equal(sockets.length, 2);
  fc.advance(1);
  await flush();
  assert.equal(sockets.length, 3, 'second attempt after the backoff');
  const ws3 = sockets[2];
  ws3.open();
  assert.deepEqual(ws3.last(), {
    control: { type: 'request', package_type: 'register', session_id: 'S1', version: '1.0' },
    header: { action: 'connect', initiator: 'alice@example.com', cslr: 2, cslw: 2, csuw: 4 },
  });
  // The server processed 2: frames 3 and 4 come again, with the same sequences.
  ws3.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 3, ack_sequence: 2, message_state: 'final' }, { action: 'connect', initiator: 'alice@example.com', sslr: 2, response_code: 200 }));
  assert.equal(session.state, 'resumed');
  const resent = ws3.frames().slice(1);
  assert.deepEqual(resent.map((f) => [f.control.sequence, f.payload.body]), [[3, 'two'], [4, 'three']]);
  assert.deepEqual(states, ['reconnecting', 'resumed']);
  // The next new frame continues the numbering.
  session.sendMessage('bob', 'four').catch(() => {});
  assert.equal(ws3.last().control.sequence, 5);
});

test('a resume refused for now (error 503) is tried again until reconnect.timeout, past connectAttempts, as after a socket loss', async () => {
  const { session, ws, fc, sockets } = await connected();
  ws.drop(1006);
  const refusals = 7; // more than reconnect.connectAttempts (5)
  for (let i = 1; i <= refusals; i++) {
    fc.advance(1000);
    await flush();
    assert.equal(sockets.length, i + 1, `resume attempt ${i}`);
    sockets[i].open();
    assert.equal(sockets[i].last().control.session_id, 'S1');
    sockets[i].receive(serverFrame({ type: 'error', package_type: 'register' }, { action: 'connect', error_code: 503, reason: 'too many sessions' }));
    assert.equal(sockets[i].closed.code, 4001);
    assert.equal(session.state, 'reconnecting');
  }
  fc.advance(1000);
  await flush();
  const last = sockets[refusals + 1];
  last.open();
  last.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 2, ack_sequence: 1, message_state: 'final' }, { action: 'connect', sslr: 1, response_code: 200 }));
  assert.equal(session.state, 'resumed');
  assert.equal(session.id, 'S1');
});

test('a resume refused 401 or 403 fails the session at once: a refused identity is final', async () => {
  for (const code of [401, 403]) {
    const { session, ws, fc, sockets } = await connected();
    ws.drop(1006);
    fc.advance(0);
    await flush();
    sockets[1].open();
    sockets[1].receive(serverFrame({ type: 'error', package_type: 'register' }, { action: 'connect', error_code: code, reason: 'refused' }));
    assert.equal(session.state, 'failed', `error ${code}`);
    fc.advance(10000);
    await flush();
    assert.equal(sockets.length, 2, `error ${code}: no further attempt`);
  }
});

test('resume: frames the server resends below its connect response are delivered once', async () => {
  const { session, ws, fc, sockets } = await connected();
  const got = [];
  session.on('message', (m) => got.push(m.body));
  ws.drop();
  fc.advance(0);
  await flush();
  const ws2 = sockets[1];
  ws2.open();
  ws2.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 3, ack_sequence: 1 }, { action: 'connect', sslr: 1 }));
  const msg = (seq, body) => serverFrame({ type: 'request', package_type: 'messaging', session_id: 'S1', sequence: seq, ack_sequence: 1, correlation_id: 's' + seq }, { action: 'send' }, { body });
  ws2.receive(msg(2, 'resent'));
  ws2.receive(msg(2, 'resent'));
  ws2.receive(msg(4, 'new'));
  assert.deepEqual(got, ['resent', 'new']);
  assert.equal(session._rel.processed, 4);
});

test('failed resume: a new session id ends the calls and restarts the numbering at 2', async () => {
  const { session, ws, fc, sockets } = await connected();
  const events = [];
  session.on('resumefailed', (e) => events.push(e));
  session.sendMessage('bob', 'lost').catch((e) => events.push(e.code));
  ws.drop();
  fc.advance(0);
  await flush();
  sockets[1].open();
  sockets[1].receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S2', sequence: 1 }, { action: 'connect', initiator: 'alice@example.com' }));
  await flush();
  assert.equal(session.state, 'connected');
  assert.equal(session.id, 'S2');
  assert.equal(events.length, 2);
  assert.ok(events.includes(1002), 'pending requests fail with SESSION_LOST');
  assert.ok(events.some((e) => e.previousId === 'S1'));
  // The reconnect connect stood for sequence 1 (docs/protocol.md §4.5):
  // a 1 here would be dropped by the gateway as its duplicate.
  session.sendMessage('bob', 'x').catch(() => {});
  assert.equal(sockets[1].last().control.sequence, 2);
  assert.equal(sockets[1].last().control.session_id, 'S2');
});

test('failed resume restores what it can: subscriptions re-made on new subsessions, presence published again, each call ended with its reason', async () => {
  const { session, ws, fc, sockets } = await connected();
  const pres = session.watchPresence('bob@example.com');
  const preq = ws.last();
  ws.receive(serverFrame({ type: 'response', package_type: 'presence', session_id: 'S1', subsession_id: pres.id, sequence: 2, ack_sequence: 2, correlation_id: preq.control.correlation_id, message_state: 'final' }, { action: 'start', response_code: 200, expiry: 3600 }));
  await pres.ready;
  const mwi = session.subscribeMessageSummary('alice@example.com'); // its start is still unanswered
  session.publishPresence({ status: 'open', activity: 'busy' }).catch(() => {});
  let call;
  session.on('incomingcall', (c) => (call = c));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 3, correlation_id: 's3' }, { action: 'start', initiator: 'carol', target: 'alice' }, { sdp: 'v=0\r\n' }));
  const callEnded = [];
  call.on('ended', (e) => callEnded.push(e));
  const presEvents = [];
  pres.on('ended', () => presEvents.push('ended'));
  pres.on('state', (e) => presEvents.push(e.state));
  const oldPresId = pres.id;
  const failed = [];
  session.on('resumefailed', (e) => failed.push(e));

  ws.drop();
  fc.advance(0);
  await flush();
  const ws2 = sockets[1];
  ws2.open();
  ws2.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S2', sequence: 1 }, { action: 'connect', initiator: 'alice@example.com' }));
  await flush();

  assert.equal(session.state, 'connected');
  assert.equal(callEnded.length, 1);
  assert.equal(callEnded[0].code, 1002);
  assert.match(callEnded[0].reason, /could not resume the session/);
  assert.equal(failed.length, 1);
  assert.equal(failed[0].previousId, 'S1');
  assert.deepEqual(failed[0].endedCalls.map((e) => [e.call, e.code]), [[call, 1002]]);
  assert.deepEqual(new Set(failed[0].resubscribed), new Set([pres, mwi]));

  // The new session's frames, numbered from 2, carry the new session id.
  const out = ws2.frames().filter((f) => f.control.type === 'request' && f.header.action !== 'connect');
  assert.deepEqual(out.map((f) => f.control.sequence), [2, 3, 4]);
  assert.ok(out.every((f) => f.control.session_id === 'S2'));
  const starts = out.filter((f) => f.header.action === 'start');
  assert.deepEqual(new Set(starts.map((f) => f.control.package_type)), new Set(['presence', 'message_notification']));
  const pstart = starts.find((f) => f.control.package_type === 'presence');
  assert.equal(pstart.header.target, 'bob@example.com');
  assert.equal(pstart.control.subsession_id, pres.id);
  assert.notEqual(pres.id, oldPresId, 'a new subsession');
  assert.equal(session.subscriptions.get(pres.id), pres, 'the same object, under its new id');
  const pub = out.find((f) => f.header.action === 'publish');
  assert.equal(pub.payload.activity, 'busy', 'presence published again');

  // The watch goes on: the same object gets the new session's notify.
  assert.deepEqual(presEvents, ['pending'], 'not ended');
  ws2.receive(serverFrame({ type: 'response', package_type: 'presence', session_id: 'S2', subsession_id: pres.id, sequence: 2, ack_sequence: 2, correlation_id: pstart.control.correlation_id, message_state: 'final' }, { action: 'start', response_code: 200, expiry: 3600 }));
  await flush();
  assert.equal(pres.state, 'active');
  const notes = [];
  pres.on('notify', (n) => notes.push(n.status));
  ws2.receive(serverFrame({ type: 'message', package_type: 'presence', session_id: 'S2', subsession_id: pres.id, sequence: 3 }, { action: 'notify' }, { presentity: 'bob@example.com', status: 'open' }));
  assert.deepEqual(notes, ['open']);
});

test('keepalive: text ping, and a reconnect when pongs stop', async () => {
  const { session, ws, fc, sockets } = await connected();
  fc.advance(1000);
  assert.equal(ws.sent.at(-1), 'ping');
  ws.receive('pong');
  fc.advance(1000);
  assert.equal(ws.sent.filter((t) => t === 'ping').length, 2);
  // No more pongs: 2 s, then the rest of the 4 s period, then reconnect.
  fc.advance(5000);
  await flush();
  assert.equal(session.state, 'reconnecting');
  assert.equal(ws.closed.code, 4001, 'the dead socket is closed, not logged out');
  assert.equal(sockets.length, 2);
});

test('reconnect gives up after the timeout: failed, storage cleared', async () => {
  const { session, ws, fc, sockets, storage } = await connected();
  ws.drop();
  for (let i = 0; i < 40 && session.state !== 'failed'; i++) {
    fc.advance(1000);
    await flush();
    sockets.at(-1).drop();
  }
  assert.equal(session.state, 'failed');
  assert.equal(storage.getItem('jsonrtc.session'), null);
});

test('close() is a logout: WebSocket close 1000 and storage cleared', async () => {
  const { session, ws, storage } = await connected();
  assert.ok(storage.getItem('jsonrtc.session'));
  session.close();
  assert.deepEqual(ws.closed, { code: 1000, reason: 'logout' });
  assert.equal(session.state, 'closed');
  assert.equal(storage.getItem('jsonrtc.session'), null);
});

test('page reload: a new Session resumes the stored session (no sequence, stored cslr/cslw/csuw)', async () => {
  const first = await connected();
  first.session.sendMessage('bob', 'pending').catch(() => {});
  first.ws.receive(serverFrame({ type: 'message', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 1 }, { action: 'send' }));
  // The page goes away (no close 1000); a new page starts with the same storage.
  const second = setup({ storage: first.storage });
  assert.equal(Session.hasStored({ storage: first.storage }), true);
  const p = second.session.connect();
  await flush();
  const ws = second.sockets[0];
  ws.open();
  assert.deepEqual(ws.last(), {
    control: { type: 'request', package_type: 'register', session_id: 'S1', version: '1.0' },
    header: { action: 'connect', initiator: 'alice@example.com', cslr: 2, cslw: 2, csuw: 2 },
  });
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 3, ack_sequence: 1 }, { action: 'connect', initiator: 'alice@example.com', sslr: 1 }));
  await p;
  assert.equal(second.session.state, 'resumed');
  assert.equal(ws.frames()[1].payload.body, 'pending', 'the unprocessed frame is resent');
  assert.equal(ws.frames()[1].control.sequence, 2);
});

test('presence and message summary subscriptions', async () => {
  const { session, ws } = await connected();
  const pres = session.watchPresence('bob@example.com');
  const req = ws.last();
  assert.equal(req.control.package_type, 'presence');
  assert.equal(req.header.action, 'start');
  assert.equal(req.header.target, 'bob@example.com');
  assert.equal(session.watchPresence('bob@example.com'), pres, 'one subscription per target');
  ws.receive(serverFrame({ type: 'response', package_type: 'presence', session_id: 'S1', subsession_id: pres.id, sequence: 2, ack_sequence: 2, correlation_id: req.control.correlation_id, message_state: 'final' }, { action: 'start', response_code: 200, expiry: 3600 }));
  await pres.ready;
  assert.equal(pres.state, 'active');
  assert.equal(pres.expiry, 3600);
  const notes = [];
  pres.on('notify', (n) => notes.push(n));
  ws.receive(serverFrame({ type: 'message', package_type: 'presence', session_id: 'S1', subsession_id: pres.id, sequence: 3, ack_sequence: 2 }, { action: 'notify' }, { presentity: 'bob@example.com', status: 'open', activity: 'busy', note: 'in a meeting' }));
  assert.deepEqual(notes, [{ presentity: 'bob@example.com', status: 'open', activity: 'busy', note: 'in a meeting' }]);

  const mwi = session.subscribeMessageSummary('sip:alice@example.com');
  const mreq = ws.last();
  assert.equal(mreq.control.package_type, 'message_notification');
  const sums = [];
  mwi.on('notify', (s) => sums.push(s));
  ws.receive(serverFrame({ type: 'message', package_type: 'message_notification', session_id: 'S1', subsession_id: mwi.id, sequence: 4, ack_sequence: 3 }, { action: 'notify' }, { messages_waiting: 'yes', message_account: 'sip:alice@example.com', 'voice-message': '2/8 (0/2)' }));
  assert.equal(sums[0].waiting, true);
  assert.equal(sums[0].newMessages, 2);
  pres.end();
  assert.equal(ws.last().header.action, 'shutdown');
  assert.equal(ws.last().control.type, 'message');
  assert.equal(pres.state, 'ended');
});

test('publishPresence sends request/publish with the PIDF-like payload', async () => {
  const { session, ws } = await connected();
  const p = session.publishPresence({ status: 'open', activity: 'available', note: 'hi' });
  const req = ws.last();
  assert.equal(req.control.package_type, 'presence');
  assert.equal(req.header.action, 'publish');
  assert.deepEqual(req.payload, { presentity: 'alice@example.com', status: 'open', activity: 'available', note: 'hi' });
  ws.receive(serverFrame({ type: 'response', package_type: 'presence', session_id: 'S1', sequence: 2, ack_sequence: 2, correlation_id: req.control.correlation_id }, { action: 'publish', response_code: 200 }));
  assert.equal(await p, 200);
});

test('error 500 ends the session', async () => {
  const { session, ws } = await connected();
  ws.receive(serverFrame({ type: 'error', package_type: 'call', session_id: 'S1', sequence: 2, ack_sequence: 1, correlation_id: 'c9' }, { action: 'start', error_code: 500 }));
  assert.equal(session.state, 'failed');
  assert.equal(ws.closed.code, 1000);
});

test('an incoming call rings (response subsequent 180) and a decline is an error 603', async () => {
  const { session, ws } = await connected();
  const calls = [];
  session.on('incomingcall', (c) => calls.push(c));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 2, ack_sequence: 1, correlation_id: 's2' }, { action: 'start', initiator: 'bob@example.com', target: 'alice@example.com' }, { sdp: 'v=0\r\nm=audio 9 RTP/AVP 0\r\n' }));
  assert.equal(calls.length, 1);
  const call = calls[0];
  assert.equal(call.state, 'ringing');
  assert.equal(call.remoteIdentity, 'bob@example.com');
  assert.deepEqual(call.kinds, ['audio']);
  assert.equal(call.video, false);
  const ring = ws.last();
  assert.equal(ring.control.type, 'response');
  assert.equal(ring.control.message_state, 'subsequent');
  assert.equal(ring.control.correlation_id, 's2');
  assert.equal(ring.control.subsession_id, 's1');
  assert.equal(ring.header.response_code, 180);
  call.decline();
  const err = ws.last();
  assert.equal(err.control.type, 'error');
  assert.equal(err.header.error_code, 603);
  assert.equal(err.control.correlation_id, 's2');
  assert.equal(call.state, 'ended');
  assert.equal(session.calls.size, 0);
});

test('an incoming video offer is a video call: kinds and video say so', async () => {
  const { session, ws } = await connected();
  let call;
  session.on('incomingcall', (c) => (call = c));
  const sdp = 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n';
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 2, ack_sequence: 1, correlation_id: 's2' }, { action: 'start', initiator: 'bob@example.com', target: 'alice@example.com' }, { sdp }));
  assert.deepEqual(call.kinds, ['audio', 'video']);
  assert.equal(call.video, true);
  call.decline();
});

test('a caller cancel (shutdown while ringing) ends the incoming call', async () => {
  const { session, ws } = await connected();
  let call;
  session.on('incomingcall', (c) => (call = c));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 2, ack_sequence: 1, correlation_id: 's2' }, { action: 'start', initiator: 'bob', target: 'alice' }, { sdp: 'v=0\r\n' }));
  const ended = [];
  call.on('ended', (e) => ended.push(e));
  ws.receive(serverFrame({ type: 'message', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 3, ack_sequence: 2, correlation_id: 's2' }, { action: 'shutdown' }));
  assert.deepEqual(ended, [{ state: 'ended', reason: 'cancelled', by: 'remote' }]);
});

/** Answers the latest presence start on ws with 200 and expiry. */
function acceptStart(ws, sub, seq, expiry) {
  const req = ws.frames().filter((f) => f.control.subsession_id === sub.id && f.header.action === 'start').at(-1);
  ws.receive(serverFrame({ type: 'response', package_type: 'presence', session_id: 'S1', subsession_id: sub.id, sequence: seq, ack_sequence: req.control.sequence, correlation_id: req.control.correlation_id, message_state: 'final' }, { action: 'start', response_code: 200, expiry }));
  return req;
}

/** No keepalive in the way while the fake clock jumps minutes ahead. */
const quiet = { session: { keepalive: { interval: 1e9, period: 1e9 } } };

const startsOf = (ws, sub) => ws.frames().filter((f) => f.control.subsession_id === sub.id && f.header.action === 'start');

test('subscription refresh: a start on the same subsession before the expiry (15 %, at least 5 s, at most half)', async () => {
  const { session, ws, fc } = await connected(quiet);
  const pres = session.watchPresence('bob');
  acceptStart(ws, pres, 2, 10);
  await pres.ready;
  fc.advance(4999);
  assert.equal(startsOf(ws, pres).length, 1);
  fc.advance(1);
  assert.equal(startsOf(ws, pres).length, 2, 'expiry 10 s: refreshed after 5 s');
  const refresh = acceptStart(ws, pres, 3, 60);
  await flush();
  assert.equal(refresh.header.target, 'bob');
  assert.equal(refresh.control.type, 'request');
  fc.advance(50999);
  assert.equal(startsOf(ws, pres).length, 2);
  fc.advance(1);
  assert.equal(startsOf(ws, pres).length, 3, 'expiry 60 s: refreshed 9 s before');
  acceptStart(ws, pres, 4, 3600);
  await flush();
  fc.advance(3060 * 1000);
  assert.equal(startsOf(ws, pres).length, 4, 'expiry 3600 s: refreshed 540 s before');
  assert.equal(session.subscriptions.size, 1);
  assert.equal(Subscription.refreshLead(4), 2000);
});

test('subscription refresh due while reconnecting is retained and sent by the resume', async () => {
  const { session, ws, fc, sockets } = await connected();
  const pres = session.watchPresence('bob');
  acceptStart(ws, pres, 2, 20);
  await pres.ready;
  ws.drop();
  fc.advance(0);
  await flush();
  sockets[1].drop(); // refused: the next attempt is after the backoff
  fc.advance(15000); // the refresh falls due meanwhile
  await flush();
  const ws2 = sockets.at(-1);
  ws2.open();
  const resume = ws2.last();
  assert.equal(resume.header.action, 'connect');
  ws2.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 3, ack_sequence: 2 }, { action: 'connect', initiator: 'alice@example.com', sslr: 2 }));
  const starts = startsOf(ws2, pres);
  assert.equal(starts.length, 1, 'the refresh is resent after the resume');
  assert.equal(starts[0].control.sequence, 3);
  assert.equal(pres.state, 'active');
});

test('page reload: a restored subscription keeps its refresh schedule and subsession', async () => {
  const first = await connected(quiet);
  const pres = first.session.watchPresence('bob');
  acceptStart(first.ws, pres, 2, 60);
  await pres.ready;
  first.ws.receive(serverFrame({ type: 'message', package_type: 'presence', session_id: 'S1', subsession_id: pres.id, sequence: 3, ack_sequence: 2 }, { action: 'notify' }, { presentity: 'bob', status: 'open', note: 'hi' }));
  first.fc.advance(40000); // 40 s of the 51 s before the refresh
  // The page reloads: a new Session on the same storage, its clock (Date.now in a browser) continues.
  const second = setup({ ...quiet, storage: first.storage });
  second.fc.t = first.fc.t;
  const restored = [];
  second.session.on('subscriptionrestored', (s) => restored.push(s));
  const p = second.session.connect();
  await flush();
  const ws = second.sockets[0];
  ws.open();
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 4, ack_sequence: 2 }, { action: 'connect', initiator: 'alice@example.com', sslr: 2 }));
  await p;
  assert.equal(restored.length, 1);
  const again = restored[0];
  assert.equal(again.id, pres.id);
  assert.equal(again.last.status, 'open');
  assert.equal(again.last.note, 'hi');
  assert.equal(second.session.watchPresence('bob'), again, 'watching again reuses the restored subscription');
  assert.equal(startsOf(ws, again).length, 0);
  second.fc.advance(10999);
  assert.equal(startsOf(ws, again).length, 0);
  second.fc.advance(1);
  const starts = startsOf(ws, again);
  assert.equal(starts.length, 1, 'refreshed 51 s after the last start, not 51 s after the reload');
  assert.equal(starts[0].control.subsession_id, pres.id);
});

test('message summary: the docs/protocol.md §7.2 payload, verbatim, through a message_notification notify', async () => {
  const text = '{"messages_waiting":"yes","message_account":"sip:bob@example.com","voice-message":"2/8 (0/2)"}';
  assert.deepEqual(parseMessageSummary(JSON.parse(text)), {
    waiting: true,
    account: 'sip:bob@example.com',
    classes: { 'voice-message': { new: 2, old: 8, urgentNew: 0, urgentOld: 2 } },
    newMessages: 2,
    oldMessages: 8,
  });
  const { session, ws } = await connected();
  const mwi = session.subscribeMessageSummary('sip:bob@example.com');
  const req = ws.last();
  const got = [];
  mwi.on('notify', (s, raw) => got.push([s, raw]));
  ws.receive(`{"control":{"type":"message","package_type":"message_notification","session_id":"S1","subsession_id":"${mwi.id}","sequence":2,"ack_sequence":${req.control.sequence},"version":"1.0"},"header":{"action":"notify","initiator":"sip:bob@example.com","target":"alice@example.com"},"payload":${text}}`);
  assert.equal(got.length, 1);
  assert.deepEqual(got[0][0], parseMessageSummary(JSON.parse(text)));
  assert.deepEqual(got[0][1], JSON.parse(text), 'the raw payload is the second argument');
  assert.equal(mwi.last.newMessages, 2);
});

test('message summary: a 404 (no voicemail service) rejects ready with the code and ends the subscription', async () => {
  const { session, ws } = await connected();
  const mwi = session.subscribeMessageSummary('sip:alice@example.com');
  const req = ws.last();
  const ended = [];
  mwi.on('ended', (e) => ended.push(e));
  ws.receive(serverFrame({ type: 'error', package_type: 'message_notification', session_id: 'S1', subsession_id: mwi.id, sequence: 2, ack_sequence: req.control.sequence, correlation_id: req.control.correlation_id }, { action: 'start', error_code: 404, reason: 'no voicemail service' }));
  await assert.rejects(mwi.ready, (e) => e.code === 404 && e.reason === 'no voicemail service');
  assert.equal(mwi.state, 'ended');
  assert.equal(ended[0].code, 404);
  assert.equal(session.subscriptions.size, 0);
  assert.equal(session.state, 'connected', 'the session goes on');
});

test('transfer: an accepted request reports the new call (message/transfer, 1xx then final); progress of our own transfer is an event', async () => {
  const { session, ws } = await connected();
  let call;
  session.on('incomingcall', (c) => (call = c));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 2, ack_sequence: 1, correlation_id: 's2' }, { action: 'start', initiator: 'bob', target: 'alice' }, { sdp: 'v=0\r\n' }));
  let req;
  call.on('transfer', (r) => (req = r));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 3, ack_sequence: 2, correlation_id: 's3' }, { action: 'transfer', refer_to: 'sip:carol@example.com' }));
  assert.equal(req.referTo, 'sip:carol@example.com');
  req.accept();
  const ok = ws.last();
  assert.equal(ok.control.type, 'response');
  assert.equal(ok.header.response_code, 202);
  for (const code of [180, 200]) {
    req.report(code);
    const m = ws.last();
    assert.equal(m.control.type, 'message');
    assert.equal(m.header.action, 'transfer');
    assert.equal(m.control.correlation_id, 's3');
    assert.equal(m.header.response_code, code);
  }
  const sent = ws.sent.length;
  req.report(486); // after the final status: nothing more
  assert.equal(ws.sent.length, sent);
  const progress = [];
  call.on('transferprogress', (e) => progress.push(e));
  ws.receive(serverFrame({ type: 'message', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: 4, ack_sequence: 2, correlation_id: 'c9' }, { action: 'transfer', response_code: 100, reason: 'Trying' }));
  assert.deepEqual(progress, [{ code: 100, reason: 'Trying' }]);
});

test('extension headers (docs/protocol.md §2.4): on every request, after the protocol headers, kept for refreshes; received ones exposed', async () => {
  const { session, ws, fc } = await connected(quiet);
  const x = { 'x-tenant': 'acme', 'X-Priority': 2, x_flag: true };
  session.sendMessage('bob', 'hi', { headers: x }).catch(() => {});
  assert.deepEqual(Object.entries(ws.last().header), [['action', 'send'], ['initiator', 'alice@example.com'], ['target', 'bob'], ...Object.entries(x)]);
  session.publishPresence({ status: 'open' }, { headers: { 'x-p': 'a' } }).catch(() => {});
  assert.equal(ws.last().header['x-p'], 'a');
  const pres = session.watchPresence('carol', { headers: { 'x-w': 'w' } });
  assert.equal(ws.last().header['x-w'], 'w');
  acceptStart(ws, pres, 2, 10);
  await pres.ready;
  fc.advance(5000);
  const starts = startsOf(ws, pres);
  assert.equal(starts.length, 2);
  assert.equal(starts[1].header['x-w'], 'w', 'the refresh carries them too');
  session.subscribeMessageSummary('sip:vm@example.com', { headers: { 'x-m': 1 } });
  assert.equal(ws.last().header['x-m'], 1);

  // Received: a message's and a call's extension headers, not the protocol's.
  const msgs = [];
  session.on('message', (m) => msgs.push(m));
  ws.receive(serverFrame({ type: 'request', package_type: 'messaging', session_id: 'S1', subsession_id: 'm1', sequence: 3, correlation_id: 's3' }, { action: 'send', initiator: 'bob', target: 'alice', 'x-a': 'b' }, { content_type: 'text/plain', body: 'x' }));
  assert.deepEqual(msgs[0].headers, { 'x-a': 'b' });
  const calls = [];
  session.on('incomingcall', (c) => calls.push(c));
  ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 'c1', sequence: 4, correlation_id: 's4' }, { action: 'start', initiator: 'bob', target: 'alice', 'x-room': 7 }, { sdp: 'v=0\r\nm=audio 9 RTP/AVP 0\r\n' }));
  assert.deepEqual(calls[0].remoteHeaders, { 'x-room': 7 });
  calls[0].end({ headers: { 'x-why': 'dnd' } });
  assert.equal(ws.last().control.type, 'error');
  assert.equal(ws.last().header.error_code, 603);
  assert.equal(ws.last().header['x-why'], 'dnd', 'end() of a ringing call declines with them');
});

test('extension headers that break §2.4 throw 400 naming the header, and nothing is sent', async () => {
  const { session, ws } = await connected(quiet);
  const sent = ws.sent.length;
  const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`x-${i}`, i]));
  for (const [headers, name] of [
    [{ '1bad': 'x' }, '1bad'],
    [{ target: 'evil' }, 'target'],
    [{ 'x-h': 'a\r\nVia: evil' }, 'x-h'],
    [{ 'x-o': { a: 1 } }, 'x-o'],
    [{ 'x-n': null }, 'x-n'],
    [{ 'x-l': 'x'.repeat(1025) }, 'x-l'],
    [many, 'more than 32'],
  ]) {
    for (const send of [
      () => session.call('bob', { headers }),
      () => session.watchPresence('bob', { headers }),
      () => session.sendMessage('bob', 'hi', { headers }),
      () => session.publishPresence({ status: 'open' }, { headers }),
    ]) {
      await assert.rejects(async () => send(), (err) => err.code === 400 && err.message.includes(name), JSON.stringify(Object.keys(headers).slice(0, 1)));
    }
  }
  assert.equal(ws.sent.length, sent);
  assert.equal(session.calls.size, 0);
  assert.equal(session.subscriptions.size, 0);
});
