import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { pollUrlOf } from '../src/longpoll.js';
import { FakeClock, FakeStorage, fakeWebSocketClass, opensAfter, serverFrame } from './fakes.js';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

/** A fetch whose requests wait until the test answers them. */
function fakeFetch() {
  const calls = [];
  const fetch = (url, init = {}) =>
    new Promise((resolve, reject) => {
      const call = {
        url,
        method: init.method ?? 'GET',
        headers: init.headers ?? {},
        body: init.body,
        answered: false,
        answer(status, { headers = {}, body = null } = {}) {
          call.answered = true;
          resolve(new Response(status === 204 ? null : body, { status, headers }));
        },
        fail(err = new TypeError('fetch failed')) {
          call.answered = true;
          reject(err);
        },
      };
      init.signal?.addEventListener('abort', () => {
        if (!call.answered) call.fail(new DOMException('aborted', 'AbortError'));
      });
      calls.push(call);
    });
  const pending = (method) => calls.filter((c) => c.method === method && !c.answered);
  return { fetch, calls, pending };
}

function setup(session = {}) {
  const fc = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const ff = fakeFetch();
  const s = new Session({
    url: 'ws://127.0.0.1:1/ws/',
    identity: 'alice',
    WebSocket: FakeWebSocket,
    fetch: ff.fetch,
    clock: fc.clock,
    storage: new FakeStorage(),
    keepalive: { interval: 1000, period: 4000 },
    reconnect: { initial: 100, max: 1000, jitter: 0, timeout: 10000, attemptTimeout: 3000, openTimeout: 500 },
    ...session,
  });
  return { fc, sockets, ff, session: s };
}

const connectResponse = (sid, seq, ack, extra = {}) =>
  serverFrame(
    { type: 'response', package_type: 'register', session_id: sid, sequence: seq, ack_sequence: ack, message_state: 'final' },
    { action: 'connect', initiator: 'alice@example.com', response_code: 200, ...extra },
  );

/** A session whose WebSocket was refused, connected over long-poll as S1. */
async function overLongPoll() {
  const env = setup();
  const p = env.session.connect();
  await flush();
  env.sockets[0].drop(1006); // the upgrade refused: closed before it opened
  await flush();
  const [open] = env.ff.pending('POST');
  open.answer(204, { headers: { 'Jsonrtc-Poll-Token': 'tok1' } });
  await flush();
  const [get] = env.ff.pending('GET');
  get.answer(200, { body: JSON.stringify([connectResponse('S1', 1, 1)]) });
  await p;
  await flush();
  return env;
}

test('pollUrlOf: http(s) for ws(s), /poll/ for /ws/', () => {
  assert.equal(pollUrlOf('ws://h:1/ws/'), 'http://h:1/poll/');
  assert.equal(pollUrlOf('wss://h/ws/webrtc/demo'), 'https://h/poll/webrtc/demo');
});

test('longpoll: a refused WebSocket falls to long-poll; the first POST carries the connect, later requests the token', async () => {
  const env = setup();
  const p = env.session.connect();
  await flush();
  assert.equal(env.sockets.length, 1, 'WebSocket first');
  env.sockets[0].drop(1006);
  await flush();
  const posts = env.ff.pending('POST');
  assert.equal(posts.length, 1);
  assert.equal(posts[0].url, 'http://127.0.0.1:1/poll/');
  assert.equal(posts[0].headers['Jsonrtc-Poll-Token'], undefined, 'no token before the connect is answered');
  const connect = JSON.parse(posts[0].body);
  assert.equal(connect.header.action, 'connect');
  assert.equal(connect.control.sequence, 1);
  assert.equal(env.ff.pending('GET').length, 0, 'no GET before the token');
  posts[0].answer(204, { headers: { 'Jsonrtc-Poll-Token': 'tok1' } });
  await flush();
  const gets = env.ff.pending('GET');
  assert.equal(gets.length, 1, 'one held GET');
  assert.equal(gets[0].headers['Jsonrtc-Poll-Token'], 'tok1');
  gets[0].answer(200, { body: JSON.stringify([connectResponse('S1', 1, 1)]) });
  await p;
  assert.equal(env.session.id, 'S1');
  assert.equal(env.session.transport, 'longpoll');
  await flush();
  assert.equal(env.ff.pending('GET').length, 1, 'the next GET is held at once');
});

test('longpoll: frames sent together share a POST of at most max_batch; one POST at a time, in order', async () => {
  const env = await overLongPoll();
  const sends = [];
  for (let i = 0; i < 40; i++) sends.push(env.session.sendMessage('bob', `m${i}`).catch(() => {}));
  await flush();
  let posts = env.ff.pending('POST');
  assert.equal(posts.length, 1, 'one POST in flight');
  const first = JSON.parse(posts[0].body);
  assert.equal(first.length, 32);
  assert.equal(first[0].payload.body, 'm0');
  assert.equal(posts[0].headers['Jsonrtc-Poll-Token'], 'tok1');
  posts[0].answer(204);
  await flush();
  posts = env.ff.pending('POST');
  assert.equal(posts.length, 1);
  const second = JSON.parse(posts[0].body);
  assert.equal(second.length, 8);
  assert.deepEqual(
    [...first, ...second].map((f) => f.control.sequence),
    Array.from({ length: 40 }, (_, i) => i + 2),
  );
});

test('longpoll: the keepalive ping is a POST of its own, never in a batch; its 204 is the pong', async () => {
  const env = await overLongPoll();
  for (const post of env.ff.pending('POST')) post.answer(204); // the connect response's ack
  await flush();
  env.session.sendMessage('bob', 'x').catch(() => {});
  env.fc.advance(1000); // the ping is due while the message's POST is out
  await flush();
  let posts = env.ff.pending('POST');
  assert.equal(posts.length, 1);
  assert.equal(JSON.parse(posts[0].body).header.action, 'send');
  posts[0].answer(204);
  await flush();
  posts = env.ff.pending('POST');
  assert.equal(posts.length, 1);
  assert.equal(posts[0].body, 'ping', 'alone, after the frames queued before it');
  // The GET is held the whole time: only the ping's answer keeps the link.
  for (let i = 0; i < 10; i++) {
    for (const post of env.ff.pending('POST')) {
      assert.equal(post.body, 'ping');
      post.answer(204);
    }
    await flush();
    env.fc.advance(1000);
    await flush();
  }
  assert.equal(env.session.state, 'connected', 'pongs keep the session up with the GET held for 10 s');
  // Unanswered pings: the keepalive gives up (period 4 s) and resumes.
  env.fc.advance(5000);
  await flush();
  assert.equal(env.session.state, 'reconnecting');
});

test('longpoll: a GET answered 410 is a lost socket; the resume tries the WebSocket again first', async () => {
  const env = await overLongPoll();
  const [get] = env.ff.pending('GET');
  get.answer(410);
  await flush();
  assert.equal(env.session.state, 'reconnecting');
  env.fc.advance(100);
  await flush();
  assert.equal(env.sockets.length, 2, 'the resume opens a WebSocket');
  const ws = env.sockets[1];
  ws.open();
  const resume = ws.last();
  assert.equal(resume.control.session_id, 'S1');
  assert.equal(resume.header.cslr, 1);
  ws.receive(connectResponse('S1', 2, undefined, { sslr: 1 }));
  await flush();
  assert.equal(env.session.state, 'resumed');
  assert.equal(env.session.transport, 'websocket');
});

test('longpoll: Jsonrtc-Close-Code 4000 on a GET (another connection took the session) ends it', async () => {
  const env = await overLongPoll();
  const [get] = env.ff.pending('GET');
  get.answer(200, { body: '[]', headers: { 'Jsonrtc-Close-Code': '4000', 'Jsonrtc-Close-Reason': 'replaced' } });
  await flush();
  assert.equal(env.session.state, 'failed');
});

test('longpoll: frames of a GET are processed in order, then its close code', async () => {
  const env = await overLongPoll();
  const got = [];
  env.session.on('message', (m) => got.push(m.body));
  const msg = (seq, body) =>
    serverFrame(
      { type: 'request', package_type: 'messaging', session_id: 'S1', sequence: seq, subsession_id: `m${seq}`, correlation_id: `s${seq}` },
      { action: 'send', initiator: 'bob', target: 'alice' },
      { content_type: 'text/plain', body },
    );
  const [get] = env.ff.pending('GET');
  get.answer(200, { body: JSON.stringify([msg(2, 'a'), msg(3, 'b')]), headers: { 'Jsonrtc-Close-Code': '1001', 'Jsonrtc-Close-Reason': 'going away' } });
  await flush();
  assert.deepEqual(got, ['a', 'b']);
  assert.equal(env.session.state, 'reconnecting', '1001: resume');
});

test('longpoll: a WebSocket that does not open within openTimeout is given up for long-poll', async () => {
  const env = setup();
  env.session.connect();
  await flush();
  assert.equal(env.ff.pending('POST').length, 0);
  env.fc.advance(500);
  await flush();
  assert.equal(env.sockets[0].closed?.code, 4001);
  assert.equal(env.ff.pending('POST').length, 1);
});

test('longpoll: logout is a DELETE with the token; 413 on a POST is fatal', async () => {
  const env = await overLongPoll();
  env.session.close();
  await flush();
  const [del] = env.ff.pending('DELETE');
  assert.equal(del.headers['Jsonrtc-Poll-Token'], 'tok1');
  assert.equal(env.ff.pending('GET').length, 0, 'the held GET is aborted');

  const env2 = await overLongPoll();
  env2.session.sendMessage('bob', 'x').catch(() => {});
  await flush();
  env2.ff.pending('POST')[0].answer(413);
  await flush();
  assert.equal(env2.session.state, 'failed');
});

test('longpoll: transports ["longpoll"] never opens a WebSocket; an unknown transport is refused', async () => {
  const env = setup({ transports: ['longpoll'] });
  env.session.connect();
  await flush();
  assert.equal(env.sockets.length, 0);
  assert.equal(env.ff.pending('POST').length, 1);
  assert.throws(() => setup({ transports: ['carrier-pigeon'] }), TypeError);
});

test('longpoll: close() in standby with the WebSocket refused logs out over long-poll: the resume POSTed, DELETE once answered', async () => {
  const env = await overLongPoll();
  for (const post of env.ff.pending('POST')) post.answer(204);
  await flush();
  const sp = env.session.standby({ token: 'device-1' });
  await flush();
  const [req] = env.ff.pending('POST');
  const standby = JSON.parse(req.body);
  assert.equal(standby.header.action, 'standby');
  req.answer(204);
  const [get] = env.ff.pending('GET');
  get.answer(200, { body: JSON.stringify([serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 2, correlation_id: standby.control.correlation_id, message_state: 'final' }, { action: 'standby', response_code: 200, expiry: 3600 })]) });
  await sp;
  assert.equal(env.session.state, 'standby');
  await flush();
  for (const c of env.ff.pending('GET')) c.fail();

  const done = env.session.close();
  await flush();

  env.sockets[env.sockets.length - 1].drop(1006); // the upgrade refused again
  await flush();
  const [open] = env.ff.pending('POST');
  assert.equal(open.headers['Jsonrtc-Poll-Token'], undefined, 'a new connection: the old token is gone with its socket');
  const resume = JSON.parse(open.body);
  assert.equal(resume.header.action, 'connect');
  assert.equal(resume.control.session_id, 'S1');
  open.answer(204, { headers: { 'Jsonrtc-Poll-Token': 'tok2' } });
  await flush();
  assert.equal(env.ff.pending('DELETE').length, 0, 'no DELETE before the resume is answered');
  const [rget] = env.ff.pending('GET');
  rget.answer(200, { body: JSON.stringify([connectResponse('S1', 3, 2, { sslr: 2 })]) });
  await done;
  const [del] = env.ff.pending('DELETE');
  assert.ok(del, 'the logout DELETE');
  assert.equal(del.headers['Jsonrtc-Poll-Token'], 'tok2');
  del.answer(204);
});

test('a long-poll connect refused with HTTP 503 is tried again after the backoff, WebSocket first', async () => {
  const env = setup();
  const p = env.session.connect();
  await flush();
  env.sockets[0].drop(1006); // the upgrade refused: a browser does not say why
  await flush();
  const [open] = env.ff.pending('POST');
  open.answer(503);
  await flush();
  assert.equal(env.session.state, 'connecting');
  assert.equal(env.sockets.length, 1);
  env.fc.advance(100);
  await flush();
  assert.equal(env.sockets.length, 2, 'the retry starts again from the WebSocket');
  env.sockets[1].open();
  env.sockets[1].receive(connectResponse('S1', 1, 1));
  await p;
  assert.equal(env.session.transport, 'websocket');
});

test('a long-poll connect refused with HTTP 403 fails at once', async () => {
  const env = setup();
  const p = env.session.connect();
  const failed = assert.rejects(p);
  await flush();
  env.sockets[0].drop(1006);
  await flush();
  env.ff.pending('POST')[0].answer(403);
  await failed;
  env.fc.advance(10000);
  await flush();
  assert.equal(env.sockets.length, 1);
  assert.equal(env.session.state, 'failed');
});

test('a long-poll resume refused with HTTP 401 or 403 fails the session at once; HTTP 503 is tried again', async () => {
  for (const status of [401, 403]) {
    const env = await overLongPoll();
    env.ff.pending('GET')[0].answer(410);
    await flush();
    assert.equal(env.session.state, 'reconnecting');
    env.fc.advance(100);
    await flush();
    env.sockets[1].drop(1006); // the upgrade refused: a browser does not say why
    await flush();
    const [open] = env.ff.pending('POST');
    assert.equal(JSON.parse(open.body).control.session_id, 'S1');
    open.answer(status);
    await flush();
    assert.equal(env.session.state, 'failed', `HTTP ${status}`);
    env.fc.advance(10000);
    await flush();
    assert.equal(env.sockets.length, 2, `HTTP ${status}: no further attempt`);
  }
  const env = await overLongPoll();
  env.ff.pending('GET')[0].answer(410);
  await flush();
  env.fc.advance(100);
  await flush();
  env.sockets[1].drop(1006);
  await flush();
  env.ff.pending('POST')[0].answer(503);
  await flush();
  assert.equal(env.session.state, 'reconnecting');
  env.fc.advance(1000);
  await flush();
  assert.equal(env.sockets.length, 3, 'the resume is tried again');
});

test('a long-poll connect refused with HTTP 503 and Retry-After waits that long at least before its next attempt', async () => {
  const env = setup();
  env.session.connect().catch(() => {});
  await flush();
  env.sockets[0].drop(1006);
  await flush();
  env.ff.pending('POST')[0].answer(503, { headers: { 'Retry-After': '2' } });
  await flush();
  await opensAfter(env, 2000, flush, 'the connect (the backoff says 100 ms)');
});
