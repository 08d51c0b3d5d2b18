// A program that uses the whole public API of the SDK, type-checked by
// `npm run typecheck` (tsc --noEmit) against src/index.d.ts through the
// package's own "exports": what an application that installs @jsonrtc/sdk
// compiles against. Never run. The @ts-expect-error lines are misuses the
// types must refuse.
import {
  Session, SessionState, CallState, Call, Subscription, JsonRtcError, ErrorCode, reasonOf,
  VERSION, SUBPROTOCOL, extensionHeaders, extensionsOf, MAX_EXTENSION_HEADERS,
  parseMessageSummary, parseCounts, originSessionId, mediaDirections, isHoldOffer,
  candidatesToFragment, fragmentToCandidates, Reliability, Backoff, Keepalive, Emitter,
  type CallStateName, type SessionStateName, type ExtensionHeaders, type PresenceStatus,
  type MessageSummary, type DigestChallenge, type DigestAuthorization, type IncomingMessage,
  type TransferRequest, type DeclaredResponse, IncomingRequest,
} from '@jsonrtc/sdk';

const v: '1.0' = VERSION;
const sp: 'jsonrtc' = SUBPROTOCOL;
const headers: ExtensionHeaders = { 'x-tenant': 'acme', 'x-priority': 2, 'x-test': true };

async function main(): Promise<void> {
  const session = new Session({
    url: 'wss://gw.example.com/ws/demo',
    identity: 'alice',
    token: async () => 'token',
    rtc: { iceServers: [{ urls: 'stun:stun.example.com' }], iceGatherTimeout: 500 },
    keepalive: { interval: 10000, busyInterval: 3000, period: 30000 },
    reconnect: { initial: 250, max: 10000, timeout: 60000 },
    authorize: (c: DigestChallenge): DigestAuthorization => ({ username: 'alice', realm: c.realm, ha1: '0'.repeat(32) }),
  });
  session.on('state', ({ state, previous, error }) => {
    const s: SessionStateName = state;
    if (s === SessionState.FAILED) console.log(previous, error?.code);
  });
  session.on('message', (m: IncomingMessage) => console.log(m.from, m.body, m.headers['x-tenant']));
  session.on('resumefailed', ({ previousId }) => console.log(previousId));
  await session.connect();
  const id: string | null = session.id;
  console.log(id, session.identity, session.connected, Session.hasStored());

  // Calls, with extension headers on every request that sends one.
  const call: Call = session.call('bob', { video: true, headers });
  call.on('state', ({ state, code, reason, by }) => {
    const s: CallStateName = state;
    if (s === CallState.FAILED) console.log(code, reason, by);
  });
  call.on('remotestream', (stream: MediaStream) => stream.getTracks());
  call.on('hold', ({ held, remoteHeld }) => console.log(held, remoteHeld));
  call.on('dtmf', ({ digits, duration }) => console.log(digits, duration));
  call.on('transfer', (req: TransferRequest) => {
    req.accept();
    req.report(200);
  });
  const remote: ExtensionHeaders = call.remoteHeaders;
  console.log(remote, call.kinds, call.video, call.duration, call.peerConnection?.connectionState);
  await call.hold({ headers });
  await call.resume({ headers });
  call.mute(true);
  call.unmute();
  call.sendDTMF('12#', { duration: 100, headers });
  const code: number = await call.transfer('carol', { headers });
  const score: DeclaredResponse = await call.request('x-score', { 'X-Game': 'chess' }, { points: 3 });
  console.log(score.code, score.reason, score.headers, score.payload, score.frame);
  call.on('request', (req: IncomingRequest) => req.respond({ payload: { ok: true }, headers }));
  await call.reoffer({ iceRestart: true, headers });
  await call.restartIce();
  const mic = (await navigator.mediaDevices.getUserMedia({ audio: true })).getAudioTracks()[0];
  await call.replaceTrack(mic);
  call.end({ headers });

  session.on('incomingcall', async (incoming: Call) => {
    if (incoming.remoteHeaders['x-spam'] === true) return incoming.decline(ErrorCode.BUSY_HERE, 'Busy Here', { headers });
    await incoming.accept({ video: incoming.video, headers });
  });

  // Subscriptions and messages.
  const bob: Subscription = session.watchPresence('bob', { headers });
  bob.on('notify', (p: PresenceStatus) => console.log(p.status, p.activity, p.note));
  await bob.ready;
  console.log(bob.headers, bob.expiry, Subscription.refreshLead(3600));
  bob.end();
  const vm = session.subscribeMessageSummary('sip:alice@example.com', { headers });
  vm.on('notify', (s: MessageSummary) => console.log(s.waiting, s.newMessages, s.classes['voice-message']?.urgentOld));
  const published: number = await session.publishPresence({ status: 'open', activity: 'busy', note: 'x' }, { headers });
  const sent: number = await session.sendMessage('bob', 'hi', { contentType: 'text/plain', headers });
  const found: DeclaredResponse = await session.request('messaging', 'x-lookup', headers, { q: 'bob' }, { target: 'sip:dir@example.com' });
  session.on('request', (req: IncomingRequest) => {
    if (req.call === null) req.reject(ErrorCode.NOT_FOUND, req.action);
    else req.respond({ code: 200 });
  });
  console.log(found.payload);
  console.log(code, published, sent);

  // Errors and helpers.
  try {
    extensionHeaders({ 'x-ok': 'yes' });
  } catch (err) {
    if (err instanceof JsonRtcError) console.log(err.code, err.reason, reasonOf(err.code));
  }
  const max: 32 = MAX_EXTENSION_HEADERS;
  console.log(max, extensionsOf({ action: 'send', 'x-a': 1 }), parseMessageSummary({ messages_waiting: 'no' }), parseCounts('1/2'));
  console.log(originSessionId('v=0'), mediaDirections('v=0'), isHoldOffer('v=0'), fragmentToCandidates(candidatesToFragment([], true)));
  console.log(new Reliability().resumeHeaders(), new Backoff().next(), new Emitter().listenerCount('x'), typeof Keepalive);
  session.close();

  // Misuses the types refuse.
  // @ts-expect-error an extension header's value is a string, number or boolean
  session.sendMessage('bob', 'hi', { headers: { 'x-o': { nested: 1 } } });
  // @ts-expect-error a call's target is a string
  session.call(42);
  // @ts-expect-error a declared request's payload is an object
  session.request('messaging', 'x-lookup', {}, 'q');
  // @ts-expect-error publishPresence needs a status
  session.publishPresence({ note: 'x' });
  // @ts-expect-error remoteHeaders is read-only
  call.remoteHeaders = {};
  // @ts-expect-error no such event payload field
  call.on('hold', ({ nope }) => nope);
}

console.log(v, sp, main);
