import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, retryAfterMs } from '../src/backoff.js';
import { Keepalive } from '../src/keepalive.js';
import { parseMessageSummary, parseCounts } from '../src/summary.js';
import { candidatesToFragment, fragmentToCandidates, mediaDirections, mediaKinds, isHoldOffer, originSessionId } from '../src/sdp.js';
import { FakeClock } from './fakes.js';

test('backoff: immediate first attempt, then doubling up to the cap', () => {
  const b = new Backoff({ initial: 100, max: 1000, factor: 2, jitter: 0, random: () => 0.5 });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(() => b.next()), [0, 100, 200, 400, 800, 1000, 1000]);
  b.reset();
  assert.equal(b.next(), 0);
});

test('backoff: jitter stays within its bounds', () => {
  const lo = new Backoff({ initial: 1000, jitter: 0.2, random: () => 0 });
  const hi = new Backoff({ initial: 1000, jitter: 0.2, random: () => 0.999999 });
  lo.next();
  hi.next();
  assert.equal(lo.next(), 800);
  assert.equal(hi.next(), 1200);
});

test('retryAfterMs: whole seconds from a header or retry_after, at most a minute; anything else is none', () => {
  assert.equal(retryAfterMs('2'), 2000);
  assert.equal(retryAfterMs(' 1 '), 1000);
  assert.equal(retryAfterMs(5), 5000);
  assert.equal(retryAfterMs(3600), 60000);
  for (const v of [null, undefined, '', '0', '-1', '1.5', 'Wed, 21 Oct 2015 07:28:00 GMT', {}]) assert.equal(retryAfterMs(v), 0, String(v));
});

test('keepalive: pings every interval while pongs come back', () => {
  const fc = new FakeClock();
  const pings = [];
  let dead = 0;
  const k = new Keepalive({ interval: 1000, period: 5000, clock: fc.clock, sendPing: () => pings.push(fc.now()), onDead: () => dead++ });
  k.start();
  for (let i = 0; i < 5; i++) {
    fc.advance(1000);
    k.activity(); // pong
  }
  assert.equal(pings.length, 5);
  assert.equal(dead, 0);
  k.stop();
});

test('keepalive: without pongs, pings at doubling intervals for the period, then gives up', () => {
  const fc = new FakeClock();
  const start = fc.now();
  const pings = [];
  let dead = 0;
  const k = new Keepalive({ interval: 1000, period: 10000, clock: fc.clock, sendPing: () => pings.push(fc.now() - start), onDead: () => dead++ });
  k.start();
  fc.advance(60000);
  // First ping at 1 s goes unanswered; then 2 s, 4 s, then the rest of the period.
  assert.deepEqual(pings, [1000, 2000, 4000, 8000]);
  assert.equal(dead, 1);
  assert.equal(k.running, false);
});

test('keepalive: an answer during the probing returns to the normal rhythm', () => {
  const fc = new FakeClock();
  const start = fc.now();
  const pings = [];
  let dead = 0;
  const k = new Keepalive({ interval: 1000, period: 10000, clock: fc.clock, sendPing: () => pings.push(fc.now() - start), onDead: () => dead++ });
  k.start();
  fc.advance(2500); // pings at 1000 and 2000 (probing)
  k.activity();
  fc.advance(1500); // back to every second: 3500 (answered below)
  k.activity();
  fc.advance(1000); // 4500, unanswered: probing again at 2 s, 4 s
  fc.advance(4000);
  assert.deepEqual(pings, [1000, 2000, 3500, 4500, 5500, 7500]);
  assert.equal(dead, 0);
  k.stop();
});

test('message summary: counts parsed into numbers', () => {
  const s = parseMessageSummary({ messages_waiting: 'yes', message_account: 'sip:bob@example.com', 'voice-message': '2/8 (0/2)' });
  assert.equal(s.waiting, true);
  assert.equal(s.account, 'sip:bob@example.com');
  assert.deepEqual(s.classes['voice-message'], { new: 2, old: 8, urgentNew: 0, urgentOld: 2 });
  assert.equal(s.newMessages, 2);
  assert.equal(s.oldMessages, 8);
  const t = parseMessageSummary({ messages_waiting: 'no', 'voice-message': '0/3', 'fax-message': '1/0(1/0)' });
  assert.equal(t.waiting, false);
  assert.deepEqual(t.classes['voice-message'], { new: 0, old: 3, urgentNew: 0, urgentOld: 0 });
  assert.deepEqual(t.classes['fax-message'], { new: 1, old: 0, urgentNew: 1, urgentOld: 0 });
  assert.equal(t.newMessages, 1);
  assert.equal(parseCounts('two/8'), null);
  assert.equal(parseCounts('2/8 (0/'), null);
  assert.equal(parseCounts(7), null);
  assert.deepEqual(parseMessageSummary(undefined).classes, {});
});

test('trickle fragments: built and parsed', () => {
  const frag = candidatesToFragment(
    [
      { candidate: 'candidate:1 1 udp 2113937151 192.0.2.1 50000 typ host', sdpMid: '0' },
      { candidate: 'candidate:2 1 udp 2113937151 192.0.2.1 50002 typ host', sdpMid: '1' },
    ],
    true,
  );
  assert.equal(
    frag,
    'a=mid:0\r\na=candidate:1 1 udp 2113937151 192.0.2.1 50000 typ host\r\na=end-of-candidates\r\n' +
      'a=mid:1\r\na=candidate:2 1 udp 2113937151 192.0.2.1 50002 typ host\r\na=end-of-candidates\r\n',
  );
  assert.deepEqual(fragmentToCandidates(frag), [
    { candidate: 'candidate:1 1 udp 2113937151 192.0.2.1 50000 typ host', sdpMid: '0' },
    { candidate: '', sdpMid: '0' },
    { candidate: 'candidate:2 1 udp 2113937151 192.0.2.1 50002 typ host', sdpMid: '1' },
    { candidate: '', sdpMid: '1' },
  ]);
  assert.deepEqual(fragmentToCandidates('a=candidate:1 1 udp 1 h 1 typ host\r\n'), [], 'no mid: ignored');
  assert.equal(candidatesToFragment([], true, ['0']), 'a=mid:0\r\na=end-of-candidates\r\n');
});

test('SDP directions, hold offers and origin', () => {
  const sdp = 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n';
  assert.deepEqual(mediaDirections(sdp), ['sendonly', 'inactive']);
  assert.equal(isHoldOffer(sdp), true);
  assert.equal(isHoldOffer(sdp.replace('a=sendonly', 'a=sendrecv')), false);
  assert.equal(isHoldOffer('v=0\r\na=inactive\r\nm=audio 9 RTP/AVP 0\r\n'), true, 'session-level direction');
  assert.equal(originSessionId(sdp), '4611731400430051336');
});

test('sdp: mediaKinds lists the offered kinds once each, without rejected streams', () => {
  assert.deepEqual(mediaKinds('v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n'), ['audio', 'video']);
  assert.deepEqual(mediaKinds('v=0\nm=audio 49170 RTP/AVP 0\nm=audio 49172 RTP/AVP 8\nm=video 0 RTP/AVP 31\n'), ['audio']);
  assert.deepEqual(mediaKinds(''), []);
});
