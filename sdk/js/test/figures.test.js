// Media figures at a call's end (docs/protocol.md §5.8): the gateway's
// shutdown carries what rtpengine counted per leg; the side that hung up
// gets a shutdown of its own with them, after its call ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverFrame } from './fakes.js';
import { connected, established, flush } from './callfakes.js';

const figures = [
  { side: 'web', packets: 100, bytes: 17200, errors: 0, quality: { mos: 4.3, jitter_ms: 8, loss_percent: 0, lost: 0, rtt_ms: 2.33 } },
  { side: 'sip', packets: 80, bytes: 13760, errors: 2 },
];

const shutdown = (sub, seq, corr, payload) =>
  serverFrame({ type: 'message', package_type: 'call', session_id: 'S1', subsession_id: sub, sequence: seq, ack_sequence: 1, correlation_id: corr }, { action: 'shutdown' }, payload);

test('figures: a remote hang-up with payload.media ends the call with them, then emits media', async () => {
  const { session, ws } = await connected();
  const call = await established(ws, session, 's1', 2);
  const events = [];
  call.on('ended', (e) => events.push(['ended', e.media]));
  call.on('media', (e) => events.push(['media', e.media, e.by]));
  ws.receive(shutdown('s1', 4, 's4', { media: figures }));
  await flush();
  assert.deepEqual(events, [
    ['ended', figures],
    ['media', figures, 'remote'],
  ]);
});

test('figures: after our own hang-up, the gateway shutdown on the ended call emits media once', async () => {
  const { session, ws } = await connected();
  const call = await established(ws, session, 's1', 2);
  const media = [];
  call.on('media', (e) => media.push(e));
  call.end();
  const bye = ws.last();
  assert.equal(bye.header.action, 'shutdown');
  assert.equal(call.state, 'ended');
  ws.receive(shutdown('s1', 4, bye.control.correlation_id, { media: figures }));
  ws.receive(shutdown('s1', 5, bye.control.correlation_id, { media: figures }));
  await flush();
  assert.deepEqual(media, [{ media: figures, by: 'local' }]);
  // Nothing answered, no call made of it.
  assert.deepEqual(ws.last(), bye);
  assert.equal(session.calls.size, 0);
});

test('figures: a remote hang-up without them emits no media', async () => {
  const { session, ws } = await connected();
  const call = await established(ws, session, 's1', 2);
  let media = 0;
  call.on('media', () => media++);
  ws.receive(shutdown('s1', 4, 's4'));
  await flush();
  assert.equal(call.state, 'ended');
  assert.equal(media, 0);
});
