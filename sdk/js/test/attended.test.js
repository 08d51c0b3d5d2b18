// Attended transfer (docs/protocol.md §5.12): the transferor names its
// consult call, the transferee's new call carries the gateway's token,
// and the target answers the replacing call without ringing and ends the
// call it replaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { SDP, connectedWithPC, established, serverFrame, settle as flush } from './fakes.js';

const connected = () => connectedWithPC(Session);


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
