import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reliability, Verdict, WindowFullError } from '../src/reliability.js';

function frame(type = 'request', pkg = 'call') {
  return { control: { type, package_type: pkg, version: '1.0' }, header: { action: 'start' } };
}

test('sequences start at 1, grow by 1, and carry the cumulative ack', () => {
  const r = new Reliability();
  const a = r.stamp(frame());
  const b = r.stamp(frame());
  assert.equal(a.control.sequence, 1);
  assert.equal(b.control.sequence, 2);
  assert.equal(a.control.ack_sequence, undefined, 'no ack before anything arrived');
  r.receive({ control: { type: 'response', sequence: 1 } });
  const c = r.stamp(frame());
  assert.equal(c.control.ack_sequence, 1);
  assert.equal(r.retained.length, 3);
});

test('acknowledgement frames take no sequence and are not retained', () => {
  const r = new Reliability();
  r.stamp(frame());
  const ack = r.stamp({ control: { type: 'acknowledgement', package_type: 'register' } });
  assert.equal(ack.control.sequence, undefined);
  assert.equal(r.retained.length, 1);
  assert.equal(r.stamp(frame()).control.sequence, 2);
});

test('cumulative acks drop retained frames; stale and bogus acks are ignored', () => {
  const r = new Reliability();
  for (let i = 0; i < 5; i++) r.stamp(frame());
  assert.equal(r.ack(3), true);
  assert.deepEqual(r.retained.map((x) => x.seq), [4, 5]);
  assert.equal(r.ack(2), false, 'stale');
  assert.equal(r.ack(9), false, 'beyond what was sent');
  r.receive({ control: { type: 'acknowledgement', ack_sequence: 5 } });
  assert.equal(r.retained.length, 0);
  assert.equal(r.retainedBytes, 0);
});

test('inbound duplicates are suppressed and acknowledgements are not delivered', () => {
  const r = new Reliability();
  assert.equal(r.receive({ control: { type: 'request', sequence: 1 } }).verdict, Verdict.DELIVER);
  assert.equal(r.receive({ control: { type: 'request', sequence: 2 } }).verdict, Verdict.DELIVER);
  assert.equal(r.receive({ control: { type: 'request', sequence: 2 } }).verdict, Verdict.DUPLICATE);
  assert.equal(r.receive({ control: { type: 'request', sequence: 1 } }).verdict, Verdict.DUPLICATE);
  assert.equal(r.receive({ control: { type: 'acknowledgement', ack_sequence: 0 } }).verdict, Verdict.ACK_ONLY);
  assert.equal(r.receive({ control: { type: 'message' } }).verdict, Verdict.UNSEQUENCED);
  const { verdict, gap } = r.receive({ control: { type: 'message', sequence: 5 } });
  assert.equal(verdict, Verdict.DELIVER);
  assert.equal(gap, 2);
  assert.equal(r.processed, 5);
});

test('resume headers: window bounds, or cslw = csuw + 1 when nothing is retained', () => {
  const r = new Reliability();
  r.stamp(frame('request', 'register')); // the connect: never part of the window
  r.receive({ control: { type: 'response', sequence: 1, ack_sequence: 1 } });
  assert.deepEqual(r.resumeHeaders(), { cslr: 1, cslw: 2, csuw: 1 });
  r.stamp(frame());
  r.stamp(frame());
  r.receive({ control: { type: 'response', sequence: 2 } });
  assert.deepEqual(r.resumeHeaders(), { cslr: 2, cslw: 2, csuw: 3 });
  r.ack(3);
  assert.deepEqual(r.resumeHeaders(), { cslr: 2, cslw: 4, csuw: 3 });
});

test('resume criteria (section 4, criterion 3) as the server evaluates them', () => {
  assert.equal(Reliability.sslrAcceptable(3, { cslw: 4, csuw: 3 }), true, 'nothing retained: sslr must be csuw');
  assert.equal(Reliability.sslrAcceptable(2, { cslw: 4, csuw: 3 }), false);
  assert.equal(Reliability.sslrAcceptable(1, { cslw: 2, csuw: 5 }), true, 'cslw - 1');
  assert.equal(Reliability.sslrAcceptable(5, { cslw: 2, csuw: 5 }), true);
  assert.equal(Reliability.sslrAcceptable(6, { cslw: 2, csuw: 5 }), false);
  assert.equal(Reliability.sslrAcceptable(0, { cslw: 2, csuw: 5 }), false);
  assert.equal(Reliability.sslrAcceptable(9, { cslw: null, csuw: null }), true);
});

test('resumed(sslr) returns the frames above sslr, in order, never register frames', () => {
  const r = new Reliability();
  r.stamp(frame('request', 'register'));
  for (let i = 0; i < 4; i++) r.stamp(frame());
  const resend = r.resumed(3);
  assert.deepEqual(resend.map((f) => f.control.sequence), [4, 5]);
  assert.deepEqual(r.retained.map((x) => x.seq), [4, 5]);
  assert.throws(() => r.resumed(9), /outside our window/);
  assert.throws(() => r.resumed(1), /outside our window/);
  assert.throws(() => r.resumed(undefined), /not a sequence/);
});

test('the connect response of a resume is numbered above the frames resent after it', () => {
  const r = new Reliability();
  r.receive({ control: { type: 'message', sequence: 3 } });
  r.receivedOutOfBand(5); // connect response
  assert.equal(r.processed, 3);
  assert.equal(r.receive({ control: { type: 'message', sequence: 4 } }).verdict, Verdict.DELIVER);
  assert.equal(r.processed, 5, 'the hole is filled');
  assert.equal(r.receive({ control: { type: 'message', sequence: 5 } }).verdict, Verdict.DUPLICATE);
  assert.equal(r.receive({ control: { type: 'message', sequence: 6 } }).verdict, Verdict.DELIVER);
  // A hole the server never fills is skipped.
  r.receivedOutOfBand(9);
  assert.equal(r.receive({ control: { type: 'message', sequence: 10 } }).verdict, Verdict.DELIVER);
  assert.equal(r.processed, 6);
  r.skipAhead();
  assert.equal(r.processed, 10);
});

test('the retained window is bounded (error 503 when full)', () => {
  const r = new Reliability({ frames: 2 });
  r.stamp(frame());
  r.stamp(frame());
  assert.throws(() => r.stamp(frame()), WindowFullError);
  assert.equal(r.nextSeq, 3, 'nothing changes on overflow');
  r.ack(1);
  assert.equal(r.stamp(frame()).control.sequence, 3);
  const small = new Reliability({ bytes: 200 });
  const big = frame();
  big.payload = { sdp: 'x'.repeat(300) };
  assert.throws(() => small.stamp(big), (e) => e.code === 503);
  assert.equal(small.nextSeq, 1);
});

test('state survives a JSON round trip (page reload)', () => {
  const r = new Reliability();
  r.stamp(frame());
  r.stamp(frame());
  r.receive({ control: { type: 'message', sequence: 4 } });
  const copy = Reliability.fromJSON(JSON.parse(JSON.stringify(r.toJSON())));
  assert.deepEqual(copy.resumeHeaders(), r.resumeHeaders());
  assert.equal(copy.retainedBytes, r.retainedBytes);
  assert.equal(copy.stamp(frame()).control.sequence, 3);
});
