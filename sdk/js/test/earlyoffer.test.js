// The caller's own re-offer before the answer (docs/protocol.md §5.9):
// once the 183 that answered the call's offer is PRACKed, hold (or any
// re-offer) goes as a start request (an UPDATE in the early dialog toward
// SIP), on the same connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverFrame } from './fakes.js';
import { connected, flush } from './callfakes.js';

const early = 'v=0\r\no=- 7 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n';
const held = early.replace('a=sendrecv', 'a=recvonly').replace('7 1', '7 2');

const frame = (type, sub, seq, corr, state, action, header, payload) =>
  serverFrame({ type, package_type: 'call', session_id: 'S1', subsession_id: sub, sequence: seq, ack_sequence: 1, correlation_id: corr, message_state: state }, { action, ...header }, payload);

/** An outgoing call whose 183 with SDP came, and its PRACK (sent by the SDK) answered when pracked. */
async function early183(pracked = true) {
  const { session, ws } = await connected();
  const call = session.call('bob');
  await flush();
  const start = ws.last();
  const sub = start.control.subsession_id;
  ws.receive(frame('response', sub, 2, start.control.correlation_id, 'subsequent', 'start', { response_code: 183 }, { sdp: early }));
  await flush();
  const prack = ws.last();
  assert.equal(prack.header.action, 'prack');
  if (pracked) {
    ws.receive(frame('response', sub, 3, prack.control.correlation_id, 'final', 'prack', {}));
    await flush();
  }
  return { ws, call, start, sub };
}

test('early offer: hold before the answer after the PRACK: the 183 becomes the answer, the re-offer is answered on the same connection, the 200 repeats it', async () => {
  const { ws, call, start, sub } = await early183();
  const pc = call.peerConnection;
  assert.equal(call.state, 'alerting');
  const done = call.hold();
  await flush();
  const offer = ws.last();
  assert.equal(offer.control.type, 'request');
  assert.equal(offer.header.action, 'start');
  assert.equal(offer.control.subsession_id, sub);
  assert.ok(offer.payload?.sdp, 'the re-offer carries SDP');
  assert.equal(pc.remoteDescription.sdp, early, 'the 183 is the answer');
  assert.equal(pc.signalingState, 'have-local-offer');
  // The call's 200 comes right behind the re-offer's answer.
  ws.receive(frame('response', sub, 4, offer.control.correlation_id, 'final', 'start', { response_code: 200 }, { sdp: held }));
  ws.receive(frame('response', sub, 5, start.control.correlation_id, 'final', 'start', { response_code: 200 }, { sdp: held }));
  await done;
  await flush();
  assert.equal(call.held, true);
  assert.equal(call.peerConnection, pc, 'the same connection');
  assert.equal(pc.remoteDescription.sdp, held);
  assert.equal(pc.signalingState, 'stable');
  assert.equal(call.state, 'established');
  assert.equal(ws.last().header.action, 'complete');
});

test('early offer: a refused re-offer rolls back and leaves the call ringing', async () => {
  const { ws, call, sub } = await early183();
  const done = call.hold();
  await flush();
  const offer = ws.last();
  ws.receive(frame('error', sub, 4, offer.control.correlation_id, undefined, 'start', { error_code: 405, reason: 'the callee does not allow UPDATE before the answer' }));
  await assert.rejects(done, (err) => err.code === 405);
  assert.equal(call.held, false);
  assert.equal(call.state, 'alerting');
  assert.equal(call.peerConnection.signalingState, 'stable');
});

test('early offer: before the PRACK is answered the re-offer is refused locally (405), nothing sent', async () => {
  const { ws, call } = await early183(false);
  const last = ws.last();
  await assert.rejects(call.hold(), (err) => err.code === 405);
  assert.deepEqual(ws.last(), last);
});
