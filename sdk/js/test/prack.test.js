// A PRACK with a new offer (docs/protocol.md §5.6, RFC 6337 section 3.1):
// with manualPrack the application acknowledges the 183 itself, and may
// offer again in it once the 183 answered the call's first offer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverFrame } from './fakes.js';
import { connected, flush } from './callfakes.js';

const early = 'v=0\r\no=- 7 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n';
const prackAnswer = early.replace('a=sendrecv', 'a=recvonly');

const response = (sub, seq, corr, state, action, header, payload) =>
  serverFrame({ type: 'response', package_type: 'call', session_id: 'S1', subsession_id: sub, sequence: seq, ack_sequence: 1, correlation_id: corr, message_state: state }, { action, ...header }, payload);

/** An outgoing call with opts, its 183 with SDP received. */
async function ringing(opts) {
  const { session, ws } = await connected();
  const call = session.call('bob', opts);
  const provisional = [];
  call.on('provisional', (e) => provisional.push(e));
  await flush();
  const start = ws.last();
  ws.receive(response(start.control.subsession_id, 2, start.control.correlation_id, 'subsequent', 'start', { response_code: 183 }, { sdp: early }));
  await flush();
  return { session, ws, call, start, provisional };
}

test('prack: with manualPrack, a PRACK offer: the 183 becomes the answer, the prack carries the new offer, its answer is applied, the 200 repeats it', async () => {
  const { ws, call, start, provisional } = await ringing({ manualPrack: true });
  assert.deepEqual(ws.last(), start, 'no PRACK of its own');
  assert.deepEqual(provisional, [{ code: 183, reason: undefined, sdp: early }]);
  assert.equal(call.peerConnection.signalingState, 'have-remote-pranswer');
  const done = call.prack({ offer: true, headers: { 'x-why': 'hold' } });
  await flush();
  const prack = ws.last();
  assert.equal(prack.control.type, 'request');
  assert.equal(prack.header.action, 'prack');
  assert.equal(prack.control.subsession_id, start.control.subsession_id);
  assert.ok(prack.payload?.sdp, 'the prack carries an offer');
  assert.ok(JSON.stringify(prack.header).includes('x-why'), 'extension headers go with it');
  assert.equal(call.peerConnection.signalingState, 'have-local-offer');
  // The 200 of the call comes right behind the prack's answer.
  ws.receive(response(start.control.subsession_id, 3, prack.control.correlation_id, 'final', 'prack', {}, { sdp: prackAnswer }));
  ws.receive(response(start.control.subsession_id, 4, start.control.correlation_id, 'final', 'start', { response_code: 200 }, { sdp: prackAnswer }));
  await done;
  await flush();
  assert.equal(call.peerConnection.remoteDescription.sdp, prackAnswer);
  assert.equal(call.peerConnection.signalingState, 'stable');
  assert.equal(call.state, 'established');
  assert.equal(ws.last().header.action, 'complete');
  await assert.rejects(call.prack(), (err) => err.code === 405, 'one PRACK per 183');
});

test('prack: a refused PRACK offer rolls the offer back and rejects', async () => {
  const { ws, call, start } = await ringing({ manualPrack: true });
  const done = call.prack({ offer: true });
  await flush();
  const prack = ws.last();
  ws.receive(serverFrame({ type: 'error', package_type: 'call', session_id: 'S1', subsession_id: start.control.subsession_id, sequence: 3, ack_sequence: 1, correlation_id: prack.control.correlation_id }, { action: 'prack', error_code: 491, reason: 'the offer is not answered yet' }));
  await assert.rejects(done, (err) => err.code === 491);
  assert.equal(call.peerConnection.signalingState, 'stable');
});

test('prack: without manualPrack the SDK PRACKs the 183 itself, and prack() has nothing to acknowledge', async () => {
  const { ws, call } = await ringing({});
  assert.equal(ws.last().header.action, 'prack');
  assert.equal(ws.last().payload?.sdp, undefined);
  await assert.rejects(call.prack({ offer: true }), (err) => err.code === 405);
});
