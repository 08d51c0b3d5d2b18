// The callee's new offer in the early dialog (a SIP UPDATE after a
// reliable 183 answered the call's offer, RFC 3311 section 5.1, relayed
// as a request/start before the call's 200).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverFrame } from './fakes.js';
import { connected, flush } from './callfakes.js';

const early = 'v=0\r\no=- 7 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n';
const update = 'v=0\r\no=- 7 2 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n';

const frame = (type, sub, seq, corr, state, action, header, payload) =>
  serverFrame({ type, package_type: 'call', session_id: 'S1', subsession_id: sub, sequence: seq, ack_sequence: 1, correlation_id: corr, message_state: state }, { action, ...header }, payload);

test('early offer: the 183 becomes the answer, the offer is answered on the same connection, and the 200 completes the call', async () => {
  const { session, ws } = await connected();
  const call = session.call('bob');
  await flush();
  const start = ws.last();
  const sub = start.control.subsession_id;
  ws.receive(frame('response', sub, 2, start.control.correlation_id, 'subsequent', 'start', { response_code: 183 }, { sdp: early }));
  await flush();
  const pc = call.peerConnection;
  assert.equal(pc.signalingState, 'have-remote-pranswer');
  ws.receive(frame('request', sub, 3, 's3', undefined, 'start', {}, { sdp: update }));
  await flush();
  const answer = ws.last();
  assert.equal(answer.control.type, 'response', `the early offer answered with ${JSON.stringify(answer)}`);
  assert.equal(answer.header.action, 'start');
  assert.equal(answer.control.correlation_id, 's3');
  assert.ok(answer.payload?.sdp, 'the answer carries SDP');
  assert.equal(call.peerConnection, pc, 'the same connection');
  assert.equal(pc.remoteDescription.sdp, update);
  assert.equal(pc.signalingState, 'stable');
  ws.receive(frame('message', sub, 4, 's3', undefined, 'complete', {}));
  // The 200 of the call: no new SDP for a stable connection.
  ws.receive(frame('response', sub, 5, start.control.correlation_id, 'final', 'start', { response_code: 200 }, { sdp: early }));
  await flush();
  assert.equal(call.state, 'established');
  assert.equal(pc.remoteDescription.sdp, update, 'the 200 repeats the 183: the early offer stands');
  assert.equal(ws.last().header.action, 'complete');
});
