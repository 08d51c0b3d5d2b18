/**
 * jsonrtc JavaScript SDK: JSONrtc 1.0 sessions, calls, subscriptions and
 * messaging over a WebSocket (subprotocol `jsonrtc`), or HTTP long-poll
 * where the WebSocket cannot open. Start with
 * `new Session({url})` and `session.connect()`; see README.md.
 */
export { Session, SessionState, SUBPROTOCOL, VERSION } from './session.js';
export { Call, CallState } from './call.js';
export { Subscription } from './subscription.js';
export { JsonRtcError, ErrorCode, reasonOf } from './errors.js';
export { Reliability, Verdict, WindowFullError, DEFAULT_WINDOW } from './reliability.js';
export { Backoff } from './backoff.js';
export { Keepalive } from './keepalive.js';
export { parseMessageSummary, parseCounts } from './summary.js';
export { originSessionId, mediaDirections, isHoldOffer, candidatesToFragment, fragmentToCandidates } from './sdp.js';
export { Emitter } from './emitter.js';
export { extensionHeaders, extensionsOf, MAX_EXTENSION_HEADERS } from './headers.js';
export { LongPollSocket, pollUrlOf } from './longpoll.js';
export { IncomingRequest } from './declared.js';
