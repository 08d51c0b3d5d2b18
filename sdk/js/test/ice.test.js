// ICE servers from the gateway (docs/protocol.md §4.10): the connect
// response's ice_servers header feeds the peer connections unless the
// application gave its own, and the SDK renews them at 80% of
// ice_servers_ttl with request/ice_servers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../src/session.js';
import { newSession, serverFrame } from './fakes.js';

const turn = (user) => [
  { urls: ['turn:turn.example.com:3478'], username: user, credential: 'pw-' + user },
  { urls: ['stun:stun.example.com:3478'] },
];

/** A session connected with a connect response carrying ice and ttl. */
async function connectedWithIce(options, ice, ttl) {
  // The fake gateway answers no ping: keepalive must not end the link
  // within the minutes of fake time the renewals take.
  const env = newSession(Session, { keepalive: { interval: 3_600_000, period: 7_200_000 }, ...options });
  const p = env.session.connect();
  await new Promise((r) => setImmediate(r));
  const ws = env.sockets[0];
  ws.open();
  ws.receive(
    serverFrame(
      { type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: 1 },
      { action: 'connect', initiator: 'alice@example.com', ice_servers: JSON.stringify(ice), ice_servers_ttl: ttl },
    ),
  );
  await p;
  return { ...env, ws };
}

test('ice servers: the connect response feeds rtc.iceServers, renewed by request/ice_servers at 80% of the ttl', async () => {
  const { fc, ws, session } = await connectedWithIce({}, turn('100:alice'), 100);
  assert.deepEqual(session.rtc.iceServers, turn('100:alice'));
  assert.deepEqual(session.gatewayIceServers, turn('100:alice'));
  const renewals = () => ws.frames().filter((f) => f.header?.action === 'ice_servers');
  fc.advance(79_000);
  assert.equal(renewals().length, 0, 'renewed before 80% of the ttl');
  fc.advance(1_000);
  assert.equal(renewals().length, 1);
  const req = renewals()[0];
  assert.equal(req.control.type, 'request');
  assert.equal(req.control.package_type, 'register');
  assert.equal(req.header.action, 'ice_servers');
  ws.receive(
    serverFrame(
      { type: 'response', package_type: 'register', session_id: 'S1', sequence: 2, correlation_id: req.control.correlation_id, message_state: 'final' },
      { action: 'ice_servers', response_code: 200, ice_servers: JSON.stringify(turn('200:alice')), ice_servers_ttl: 100 },
    ),
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(session.rtc.iceServers, turn('200:alice'));
  // The next renewal is 80 s after this one.
  fc.advance(79_000);
  assert.equal(renewals().length, 1);
  fc.advance(1_000);
  assert.equal(renewals().length, 2);
  session.close();
});

test('ice servers: the application\'s own rtc.iceServers win; the gateway\'s are kept apart', async () => {
  const own = [{ urls: ['stun:own.example.com'] }];
  const { session } = await connectedWithIce({ rtc: { iceServers: own } }, turn('100:alice'), 100);
  assert.deepEqual(session.rtc.iceServers, own);
  assert.deepEqual(session.gatewayIceServers, turn('100:alice'));
  session.close();
});

test('ice servers: an empty rtc.iceServers is none: the gateway\'s are used', async () => {
  const { session } = await connectedWithIce({ rtc: { iceServers: [] } }, turn('100:alice'), 100);
  assert.deepEqual(session.rtc.iceServers, turn('100:alice'));
  session.close();
});
