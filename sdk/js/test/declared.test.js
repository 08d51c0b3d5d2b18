import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { IncomingRequest } from '../src/index.js';
import { connectedSession, serverFrame } from './fakes.js';

test('request: a declared action goes out as a request and resolves with its response', async () => {
  const { session, ws } = await connectedSession(Session);
  const p = session.request('messaging', 'x-lookup', { 'X-Tenant': 'acme' }, { q: 'bob' }, { target: 'sip:dir@example.com' });
  const req = ws.last();
  assert.equal(req.control.type, 'request');
  assert.equal(req.control.package_type, 'messaging');
  assert.equal(req.control.correlation_id, 'c2');
  assert.deepEqual(req.header, { action: 'x-lookup', initiator: 'alice@example.com', target: 'sip:dir@example.com', 'X-Tenant': 'acme' });
  assert.deepEqual(req.payload, { q: 'bob' });
  ws.receive(
    serverFrame(
      { type: 'response', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 2, correlation_id: 'c2', message_state: 'final' },
      { action: 'x-lookup', response_code: 200, 'X-Found': true },
      { found: 'bob' },
    ),
  );
  const res = await p;
  assert.equal(res.code, 200);
  assert.deepEqual(res.headers, { 'X-Found': true });
  assert.deepEqual(res.payload, { found: 'bob' });
});

test('request: an error frame rejects with its code and the field it names', async () => {
  const { session, ws } = await connectedSession(Session);
  const p = session.request('messaging', 'x-lookup', {}, { q: '' });
  ws.receive(
    serverFrame(
      { type: 'error', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 2, correlation_id: ws.last().control.correlation_id },
      { action: 'x-lookup', error_code: 400, reason: 'payload.q: minLength: got 0, want 1' },
    ),
  );
  await assert.rejects(p, (e) => e.code === 400 && e.reason.startsWith('payload.q'));
});

test('request: refuses a built-in action, a bad name and a payload that is no object', async () => {
  const { session } = await connectedSession(Session);
  await assert.rejects(session.request('messaging', 'send', {}, {}), (e) => e.code === 400);
  await assert.rejects(session.request('messaging', 'x y', {}, {}), (e) => e.code === 400);
  await assert.rejects(session.request('messaging', 'x-a', {}, 'q'), (e) => e.code === 400);
});

test("request event: an unknown action's request reaches the listener, whose answer goes back", async () => {
  const { session, ws } = await connectedSession(Session);
  const got = [];
  session.on('request', (r) => got.push(r));
  ws.receive(
    serverFrame(
      { type: 'request', package_type: 'messaging', session_id: 'S1', sequence: 2, ack_sequence: 1, correlation_id: 's2' },
      { action: 'x-ping', initiator: 'bob@example.com', target: 'alice@example.com', 'X-N': 3 },
      { n: 3 },
    ),
  );
  assert.equal(got.length, 1);
  const r = got[0];
  assert.ok(r instanceof IncomingRequest);
  assert.equal(r.action, 'x-ping');
  assert.equal(r.package, 'messaging');
  assert.equal(r.call, null);
  assert.deepEqual(r.headers, { 'X-N': 3 });
  assert.deepEqual(r.payload, { n: 3 });
  r.respond({ payload: { pong: true }, headers: { 'X-N': 4 } });
  const resp = ws.last();
  assert.equal(resp.control.type, 'response');
  assert.equal(resp.control.correlation_id, 's2');
  assert.equal(resp.control.message_state, 'final');
  assert.deepEqual(resp.header, { action: 'x-ping', initiator: 'bob@example.com', target: 'alice@example.com', response_code: 200, 'X-N': 4 });
  assert.deepEqual(resp.payload, { pong: true });
  assert.throws(() => r.reject(500), (e) => e.code === 405, 'answered once');
});

test('request event: without a listener an unknown action is refused with 405', async () => {
  const { ws } = await connectedSession(Session);
  ws.receive(
    serverFrame(
      { type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 'x1', sequence: 2, ack_sequence: 1, correlation_id: 's2' },
      { action: 'x-score' },
    ),
  );
  const resp = ws.last();
  assert.equal(resp.control.type, 'error');
  assert.equal(resp.control.correlation_id, 's2');
  assert.equal(resp.header.error_code, 405);
});

test("request event: a call's unknown request goes to the call's listeners; call.request waits for the established call", async () => {
  const { session, ws } = await connectedSession(Session);
  const { Call } = await import('../src/call.js');
  const call = new Call(session, { id: 'k1', direction: 'outgoing', caller: 'alice@example.com', callee: 'sip:bob@example.com', options: {} });
  session._addCall(call);
  await assert.rejects(call.request('x-score', {}, { points: 1 }), (e) => e.code === 405);
  const onCall = [];
  const onSession = [];
  call.on('request', (r) => onCall.push(r));
  session.on('request', (r) => onSession.push(r));
  ws.receive(
    serverFrame(
      { type: 'request', package_type: 'call', session_id: 'S1', subsession_id: 'k1', sequence: 2, ack_sequence: 1, correlation_id: 's2' },
      { action: 'x-score', initiator: 'sip:bob@example.com', target: 'alice@example.com' },
      { points: 9 },
    ),
  );
  assert.equal(onCall.length, 1);
  assert.equal(onSession.length, 0);
  assert.equal(onCall[0].call, call);
  onCall[0].reject(486, 'busy');
  const resp = ws.last();
  assert.equal(resp.control.type, 'error');
  assert.equal(resp.control.subsession_id, 'k1');
  assert.equal(resp.header.error_code, 486);
});
