// Issue 16: every public method that sends a frame takes extension
// headers (docs/protocol.md §2.4) in opts.headers and puts them on the
// frame; bad ones throw 400 before anything is sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverFrame } from './fakes.js';
import { connected, established, flush } from './callfakes.js';


const bad = { 'x-h': 'a\r\nVia: evil' };

test('Subscription.end({headers}): the shutdown carries them; bad ones throw and the subscription goes on', async () => {
  const { session, ws } = await connected();
  const pres = session.watchPresence('bob');
  const sent = ws.sent.length;
  assert.throws(() => pres.end({ headers: bad }), (e) => e.code === 400 && e.message.includes('x-h'));
  assert.equal(ws.sent.length, sent);
  assert.notEqual(pres.state, 'ended');
  pres.end({ headers: { 'x-why': 'bye' } });
  const sd = ws.last();
  assert.equal(sd.header.action, 'shutdown');
  assert.equal(sd.header['x-why'], 'bye');
  assert.equal(pres.state, 'ended');
});

test("a transfer request's accept, reject and report take headers", async () => {
  const { session, ws } = await connected();
  const call = await established(ws, session, 's1', 2);
  const reqs = [];
  call.on('transfer', (r) => reqs.push(r));
  const refer = (seq) =>
    ws.receive(serverFrame({ type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 's1', sequence: seq, ack_sequence: 1, correlation_id: `s${seq}` }, { action: 'transfer', refer_to: 'sip:carol@example.com' }));
  refer(4);
  const sent = ws.sent.length;
  assert.throws(() => reqs[0].accept({ headers: bad }), (e) => e.code === 400);
  assert.equal(ws.sent.length, sent, 'nothing sent, the request still unanswered');
  reqs[0].accept({ headers: { 'x-a': 'yes' } });
  let f = ws.last();
  assert.equal(f.header.response_code, 202);
  assert.equal(f.header['x-a'], 'yes');
  reqs[0].report(200, undefined, { headers: { 'x-r': 1 } });
  f = ws.last();
  assert.equal(f.control.type, 'message');
  assert.equal(f.header.response_code, 200);
  assert.equal(f.header.reason, 'OK');
  assert.equal(f.header['x-r'], 1);

  refer(5);
  reqs[1].reject(486, { headers: { 'x-no': true } });
  f = ws.last();
  assert.equal(f.control.type, 'error');
  assert.equal(f.header.error_code, 486);
  assert.equal(f.header['x-no'], true);
});

test('restartIce({headers}) puts them on the re-offer', async () => {
  const { session, ws } = await connected();
  const call = await established(ws, session, 's1', 2);
  assert.throws(() => call.restartIce({ headers: bad }), (e) => e.code === 400, 'thrown at once, as reoffer and hold do');
  call.restartIce({ headers: { 'x-net': 'wifi' } }).catch(() => {});
  await flush();
  const ro = ws.last();
  assert.equal(ro.control.type, 'request');
  assert.equal(ro.header.action, 'start');
  assert.equal(ro.header['x-net'], 'wifi');
});

test("a declared request's reject takes headers", async () => {
  const { session, ws } = await connected();
  const got = [];
  session.on('request', (r) => got.push(r));
  ws.receive(serverFrame({ type: 'request', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 1, correlation_id: 's2' }, { action: 'x-ping', initiator: 'bob', target: 'alice' }, {}));
  got[0].reject(486, 'busy', { headers: { 'x-busy': 'meeting' } });
  const f = ws.last();
  assert.equal(f.control.type, 'error');
  assert.equal(f.header.error_code, 486);
  assert.equal(f.header['x-busy'], 'meeting');
});
