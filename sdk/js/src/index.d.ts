// Types of the jsonrtc JavaScript SDK (the sources are JSDoc-typed ES modules).

export declare const VERSION: '1.0';
export declare const SUBPROTOCOL: 'jsonrtc';

export type SessionStateName = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'resumed' | 'standby' | 'failed' | 'closed';
export declare const SessionState: Readonly<{
  IDLE: 'idle'; CONNECTING: 'connecting'; CONNECTED: 'connected'; RECONNECTING: 'reconnecting';
  RESUMED: 'resumed'; STANDBY: 'standby'; FAILED: 'failed'; CLOSED: 'closed';
}>;

/** What rtpengine counted on one leg of a call (docs/protocol.md §5.8). */
export interface MediaFigures {
  side: 'web' | 'sip';
  packets: number;
  bytes: number;
  errors: number;
  /** Absent when rtpengine had no RTCP reports for the leg. */
  quality?: { mos: number; jitter_ms: number; loss_percent: number; lost: number; rtt_ms: number };
  /** When the relay last reported these (UTC, RFC 3339): its instance was lost, they are not final. */
  as_of?: string;
}

export type CallStateName = 'new' | 'calling' | 'alerting' | 'ringing' | 'connecting' | 'established' | 'ended' | 'failed';
export declare const CallState: Readonly<{
  NEW: 'new'; CALLING: 'calling'; ALERTING: 'alerting'; RINGING: 'ringing'; CONNECTING: 'connecting';
  ESTABLISHED: 'established'; ENDED: 'ended'; FAILED: 'failed';
}>;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

export interface Logger {
  debug(...a: unknown[]): void;
  info(...a: unknown[]): void;
  warn(...a: unknown[]): void;
  error(...a: unknown[]): void;
}

export interface SessionOptions {
  /** ws:// or wss:// URL of the gateway, e.g. `wss://host/ws/app`. */
  url: string;
  /** Bearer token, sent as the `access_token` query parameter (or a function returning one, called per attempt). */
  token?: string | (() => string | Promise<string>);
  /** Identity to claim in `connect` (open mode); omit for a guest or token identity. */
  identity?: string;
  /** Subprotocol to offer (default 'jsonrtc'). */
  subprotocol?: string;
  /** Resume a session stored in sessionStorage by an earlier page (default true). */
  resume?: boolean;
  WebSocket?: typeof WebSocket;
  /**
   * Transports in order of preference (default `['websocket', 'longpoll']`).
   * Each connect and resume tries them in turn until one carries the
   * connect response; the next resume starts again from the first.
   */
  transports?: Array<'websocket' | 'longpoll'>;
  /** The long-poll transport (docs/protocol.md §1.6). */
  longpoll?: {
    /** The /poll/ URL (default: `url` with http(s) for ws(s) and /poll/ for /ws/). */
    url?: string;
    /** Most frames in one POST (default 32, the gateway's longpoll.max_batch). */
    maxBatch?: number;
    fetch?: typeof fetch;
  };
  /**
   * Automatic standby (docs/protocol.md §4.9): with `auto`, the session
   * sleeps while the page is hidden and nothing is under way, with the
   * channel `push()` returns, and wakes when the page shows again.
   */
  standby?: { auto?: boolean; push: () => PushChannel | null | Promise<PushChannel | null>; document?: Document };
  /** fetch for the long-poll transport (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Where the session is kept across page reloads (default sessionStorage; null: nowhere). */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  storageKey?: string;
  keepalive?: {
    /** ms between text pings with no call (default 10000). */
    interval?: number;
    /** ms between pings while a call is up (default 3000). */
    busyInterval?: number;
    /** ms of unanswered pings (at doubling intervals) before reconnecting (default 30000). */
    period?: number;
  };
  reconnect?: {
    /** First delay after the immediate first attempt (default 250 ms). */
    initial?: number;
    max?: number;
    factor?: number;
    jitter?: number;
    /** Give up (state 'failed') after this long (default 60000 ms, the gateway's resume timeout). */
    timeout?: number;
    /** Abandon one attempt after this long (default 10000 ms). */
    attemptTimeout?: number;
    /** A WebSocket not open after this long is given up for the next transport (default 5000 ms). */
    openTimeout?: number;
    /**
     * Attempts of the first connect when the gateway refuses it for now
     * (error 503, a close 1013, long-poll's HTTP 503), each after the
     * backoff; any other refusal fails at once (default 5; 1: no retry).
     */
    connectAttempts?: number;
  };
  /**
   * How long a request waits for its answer before it fails with 408
   * (ms), by `'package.action'` (e.g. `'messaging.send'`), by action
   * (`'start'`), or `default` (30000); `progress` (180000) bounds the wait
   * for the final answer once a provisional one came (a ringing call).
   * The connect is bounded by `reconnect.attemptTimeout`.
   */
  requestTimeouts?: { default?: number; progress?: number; [action: string]: number | undefined };
  /** ms with nothing to send before a standalone acknowledgement (default 200). */
  ackDelay?: number;
  /** Retained window bounds (default 1024 frames, 1 MiB). */
  window?: { frames?: number; bytes?: number };
  rtc?: {
    RTCPeerConnection?: typeof RTCPeerConnection;
    getUserMedia?: (c: MediaStreamConstraints) => Promise<MediaStream>;
    /** STUN/TURN servers; unset or empty: those the gateway hands the session (docs/protocol.md §4.10), else none. */
    iceServers?: RTCIceServer[];
    /** 'relay' uses TURN relays only (default 'all'). */
    iceTransportPolicy?: RTCIceTransportPolicy;
    /** ms to wait for ICE gathering before sending the SDP; later candidates trickle (default 1000). */
    iceGatherTimeout?: number;
    /** Trickle late candidates with `message`/`trickle` (default true). */
    trickle?: boolean;
  };
  /**
   * Answers the SIP registrar's digest challenge (docs/protocol.md §4.8):
   * a connect's 401/407, and the gateway's `request`/`authenticate` when a
   * registration refresh is challenged and the gateway holds no reusable
   * credentials. Return `{username, realm, ha1}` (the gateway then answers
   * later challenges itself) or a computed response.
   */
  authorize?: (challenge: DigestChallenge) => DigestAuthorization | Promise<DigestAuthorization>;
  clock?: Clock;
  logger?: Logger;
}

/** header.authenticate (docs/protocol.md §4.8). */
export interface DigestChallenge {
  scheme: string;
  realm: string;
  nonce: string;
  algorithm?: string;
  /** Comma-separated, e.g. 'auth'. */
  qop?: string;
  opaque?: string;
  stale?: boolean;
  method: string;
  uri: string;
}

/** header.authorization: an ha1, or a response computed for one challenge. */
export type DigestAuthorization =
  | { username: string; realm: string; ha1: string }
  | { username: string; realm: string; nonce: string; response: string; cnonce?: string; nc?: number | string; uri: string; qop?: string };

/** How the gateway wakes a client in standby: a Web Push subscription (toJSON()) or a native app's webhook token. */
export type PushChannel =
  | { type?: 'webpush'; endpoint: string; keys: { p256dh: string; auth: string } }
  | { type?: 'webhook'; token: string };

/**
 * Extension headers (docs/protocol.md §2.4): names `^[A-Za-z][A-Za-z0-9_-]{0,63}$`
 * other than the protocol's, values a string (at most 1024 bytes, no
 * control characters), a number or a boolean; at most 32. The SDK throws a
 * JsonRtcError 400 naming a bad one before sending anything.
 */
export type ExtensionHeaders = Record<string, string | number | boolean>;

/** Extension headers for the request (or response) a method sends. */
export interface HeaderOptions {
  headers?: ExtensionHeaders;
}

export interface CallOptions extends HeaderOptions {
  video?: boolean;
  /** The token of an attended transfer (TransferRequest.replaces): this call replaces the one it names. */
  replaces?: string;
  /** Use this stream instead of getUserMedia (the SDK does not stop it). */
  localStream?: MediaStream;
  /** Outgoing: leave 183s unacknowledged for Call.prack (a PRACK with a new offer, docs/protocol.md §5.6). */
  manualPrack?: boolean;
}

export interface IncomingMessage {
  from: string;
  to: string;
  contentType: string;
  body: string;
  /** The sender's extension headers. */
  headers: ExtensionHeaders;
  frame: object;
}

export interface StateChange<S> {
  state: S;
  previous: S;
  error?: JsonRtcError;
}

export interface CallStateChange extends StateChange<CallStateName> {
  code?: number;
  reason?: string;
  by?: 'local' | 'remote' | 'session';
}

export declare class Emitter {
  on(event: string, fn: (...args: any[]) => void): () => void;
  once(event: string, fn: (...args: any[]) => void): () => void;
  off(event: string, fn: (...args: any[]) => void): void;
  emit(event: string, ...args: unknown[]): void;
  listenerCount(event: string): number;
}

/**
 * A JSONrtc session with the gateway: connect, reliability (sequence and
 * acknowledgement), keepalive, reconnect and resume, and a reload of the
 * page that resumes it (sessionStorage). Calls, subscriptions and messages
 * start here. Events: state, incomingcall, callrestored,
 * subscriptionrestored, message, resumefailed, error.
 */
export declare class Session extends Emitter {
  constructor(options: SessionOptions);
  static hasStored(opts?: { storage?: SessionOptions['storage']; storageKey?: string }): boolean;
  readonly url: string;
  /** The long-poll URL. */
  readonly pollUrl: string;
  /** The transport of the current (or last) socket. */
  readonly transport: 'websocket' | 'longpoll' | null;
  readonly id: string | null;
  readonly identity: string | null;
  readonly state: SessionStateName;
  readonly connected: boolean;
  readonly calls: Map<string, Call>;
  readonly subscriptions: Map<string, Subscription>;
  /** Counters: requests that got no answer within their bound. */
  readonly stats: { requestTimeouts: number };
  /** The bound on the first answer to a request of pkg/action (ms). */
  requestTimeout(pkg: string, action: string): number;
  connect(): Promise<Session>;
  /**
   * Sleeps: registers how the gateway wakes this client, then closes the
   * socket (state 'standby'). Resolves with the gateway's standby timeout
   * (s). Refused (405) while a call is up.
   */
  standby(push: PushChannel | PushSubscription): Promise<number>;
  /** Resumes a session in standby (so do connect() and any send). */
  wake(): void;
  /**
   * The ICE servers the gateway handed the session (its connect response,
   * or the last renewal; docs/protocol.md §4.10), null when it handed
   * none. Calls use them unless rtc.iceServers was given.
   */
  readonly gatewayIceServers: RTCIceServer[] | null;
  /**
   * Asks the gateway for fresh ICE servers (a new TURN credential). The
   * SDK does it by itself once 80% of their ttl has passed.
   */
  renewIceServers(): Promise<RTCIceServer[] | null>;
  /**
   * Logs out (close 1000). A session with no socket (standby, between
   * reconnects) is resumed on a socket of its own and closed at once, so
   * the gateway ends it now; resolves when done or given up.
   */
  close(): Promise<void>;
  call(target: string, opts?: CallOptions): Call;
  /** The headers go on the subscribe and on every refresh. */
  watchPresence(target: string, opts?: HeaderOptions): Subscription;
  subscribeMessageSummary(target: string, opts?: HeaderOptions): Subscription;
  publishPresence(state: { status: 'open' | 'closed'; activity?: string; note?: string }, opts?: HeaderOptions): Promise<number>;
  sendMessage(target: string, body: string, opts?: { contentType?: string } & HeaderOptions): Promise<number>;
  /**
   * Sends a request of an action the gateway's configuration declares,
   * outside any call; rejects with a JsonRtcError on an error frame.
   */
  request(pkg: string, action: string, headers?: ExtensionHeaders, payload?: Record<string, unknown>, opts?: { target?: string }): Promise<DeclaredResponse>;
  on(event: 'state', fn: (e: StateChange<SessionStateName>) => void): () => void;
  on(event: 'incomingcall' | 'callrestored', fn: (call: Call) => void): () => void;
  on(event: 'subscriptionrestored', fn: (sub: Subscription) => void): () => void;
  on(event: 'message', fn: (msg: IncomingMessage) => void): () => void;
  /** A request of an action the SDK does not know (a call's goes to the call's listeners first); 405 when nobody listens. */
  on(event: 'request', fn: (req: IncomingRequest) => void): () => void;
  /**
   * The gateway could not resume the session: a new one runs already.
   * Subscriptions were made again (the same objects, on new subsessions),
   * presence published again; each call ended (`failed`, 1002, reason).
   */
  on(
    event: 'resumefailed',
    fn: (e: { previousId: string; endedCalls: Array<{ call: Call; code: number; reason: string }>; resubscribed: Subscription[] }) => void,
  ): () => void;
  on(event: 'requesttimeout', fn: (e: { package: string; action: string; timeout: number; frame: object }) => void): () => void;
  on(event: 'error', fn: (err: Error) => void): () => void;
}

/** The long-poll transport as a WebSocket-like socket (docs/protocol.md §1.6). */
export declare class LongPollSocket {
  constructor(url: string, opts?: { fetch?: typeof fetch; maxBatch?: number });
  readonly url: string;
  readonly protocol: 'jsonrtc';
  readonly readyState: 0 | 1 | 3;
  onopen: ((ev: object) => void) | null;
  onmessage: ((ev: { data: string }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((ev: object) => void) | null;
  send(text: string): void;
  close(code?: number, reason?: string): void;
}
export declare function pollUrlOf(url: string): string;

/** The response to a declared action's request (Session.request, Call.request). */
export interface DeclaredResponse {
  code: number;
  reason: string;
  headers: ExtensionHeaders;
  payload: Record<string, unknown>;
  frame: object;
}

/**
 * A request of an action the SDK does not know: one the gateway's
 * configuration declares (docs/protocol.md §2.8), such as a SIP INFO of
 * a declared Info Package inside a call. Answer it once.
 */
export declare class IncomingRequest {
  readonly package: string;
  readonly action: string;
  /** The call it belongs to (package call), else null. */
  readonly call: Call | null;
  readonly from: string | undefined;
  readonly headers: ExtensionHeaders;
  readonly payload: Record<string, unknown>;
  readonly frame: object;
  /** Answers with a response (code 2xx, default 200). */
  respond(opts?: { code?: number; reason?: string; headers?: ExtensionHeaders; payload?: Record<string, unknown> }): void;
  /** Answers with an error frame (default 603); opts.headers go on it. */
  reject(code?: number, reason?: string, opts?: HeaderOptions): void;
}

export interface TransferRequest {
  referTo: string;
  /** Attended transfer: pass it on the new call, `session.call(referTo, { replaces })`. */
  replaces?: string;
  /** Answers 202 Accepted (opts.headers on it); then report the new call with report(). */
  accept(opts?: HeaderOptions): void;
  /** Answers with an error (default 603; opts.headers on it). */
  reject(code?: number, opts?: HeaderOptions): void;
  /** After accept(): the new call's status, 1xx, then its final code (200 when answered); opts.headers on each. */
  report(code: number, reason?: string, opts?: HeaderOptions): void;
}

/**
 * A call: one subsession of the `call` package with its RTCPeerConnection.
 * Made by `Session.call` (outgoing) or handed over by the session's
 * `incomingcall` event (already ringing: the SDK sent 180). A session
 * holds several at once (call waiting: hold one, accept another).
 */
export declare class Call extends Emitter {
  readonly session: Session;
  readonly id: string;
  readonly direction: 'outgoing' | 'incoming';
  readonly caller: string;
  readonly callee: string;
  readonly remoteIdentity: string;
  readonly state: CallStateName;
  readonly ended: boolean;
  /**
   * Video is offered: by us on an outgoing call, by the caller on an
   * incoming one (answer it with `accept({video: true})`).
   */
  readonly video: boolean;
  /** The media kinds offered, e.g. ['audio', 'video'] (m= lines with a non-zero port). */
  readonly kinds: string[];
  readonly held: boolean;
  readonly remoteHeld: boolean;
  readonly muted: boolean;
  readonly restored: boolean;
  readonly establishedAt: number | null;
  /** Seconds since established. */
  readonly duration: number;
  readonly peerConnection: RTCPeerConnection | null;
  readonly localStream: MediaStream | null;
  readonly remoteStream: MediaStream | null;
  /** The other side's extension headers: the caller's start, or the answer of an outgoing call. */
  readonly remoteHeaders: ExtensionHeaders;
  /** Incoming: the id of this session's call this one replaces (attended transfer), or null; answered without ringing. */
  readonly replaces: string | null;
  /** The call this one replaces, while it lasts. */
  readonly replacedCall: Call | null;
  /** Answers; opts.headers go on the answer. */
  accept(opts?: CallOptions): Promise<void>;
  decline(code?: number, reason?: string, opts?: HeaderOptions): void;
  end(opts?: HeaderOptions): void;
  hold(opts?: HeaderOptions): Promise<void>;
  resume(opts?: HeaderOptions): Promise<void>;
  mute(muted?: boolean): void;
  unmute(): void;
  /** Switches a local device mid-call: replaces the sender's track of its kind without a re-offer. */
  replaceTrack(track: MediaStreamTrack): Promise<void>;
  sendDTMF(digits: string, opts?: { duration?: number; gap?: number; inband?: boolean } & HeaderOptions): void;
  /** Blind, or attended with `replaces`: the consult call (or its id) the other party's new call replaces. */
  transfer(target: string, opts?: HeaderOptions & { replaces?: Call | string }): Promise<number>;
  /** Sends a request of a declared `call` action in this call (its SIP request goes in the dialog). */
  request(action: string, headers?: ExtensionHeaders, payload?: Record<string, unknown>): Promise<DeclaredResponse>;
  /**
   * PRACKs the last 183 of an outgoing call made with `manualPrack`; with `offer`, the PRACK carries a new
   * offer and its response's answer is applied (docs/protocol.md §5.6).
   */
  prack(opts?: { offer?: boolean; iceRestart?: boolean } & HeaderOptions): Promise<void>;
  /** With `manualPrack`: a 183 that waits for Call.prack. */
  on(event: 'provisional', fn: (e: { code: number; reason?: string; sdp?: string }) => void): () => void;
  restartIce(opts?: HeaderOptions): Promise<void>;
  reoffer(opts?: { iceRestart?: boolean; newPeerConnection?: boolean } & HeaderOptions): Promise<void>;
  on(event: 'state', fn: (e: CallStateChange) => void): () => void;
  on(event: 'ended', fn: (e: { state: CallStateName; code?: number; reason?: string; by?: string; media?: MediaFigures[] }) => void): () => void;
  /** What rtpengine counted per leg, at the call's end (docs/protocol.md §5.8); by: who hung up. Comes after `ended`. */
  on(event: 'media', fn: (e: { media: MediaFigures[]; by: 'local' | 'remote' }) => void): () => void;
  on(event: 'localstream' | 'remotestream', fn: (s: MediaStream) => void): () => void;
  on(event: 'hold', fn: (e: { held: boolean; remoteHeld: boolean }) => void): () => void;
  on(event: 'mute', fn: (muted: boolean) => void): () => void;
  on(event: 'dtmf', fn: (e: { digits: string; duration: number }) => void): () => void;
  on(event: 'transfer', fn: (req: TransferRequest) => void): () => void;
  /** A request of a declared action in this call (an INFO of a declared package). */
  on(event: 'request', fn: (req: IncomingRequest) => void): () => void;
  on(event: 'transferprogress', fn: (e: { code: number; reason: string }) => void): () => void;
  on(event: 'ice', fn: (s: RTCIceConnectionState) => void): () => void;
  on(event: 'error', fn: (err: Error) => void): () => void;
}

export interface PresenceStatus {
  presentity: string;
  status: 'open' | 'closed' | string;
  activity?: string;
  note?: string;
}

export interface MessageCounts { new: number; old: number; urgentNew: number; urgentOld: number }

export interface MessageSummary {
  waiting: boolean;
  account?: string;
  classes: Record<string, MessageCounts>;
  newMessages: number;
  oldMessages: number;
}

/**
 * A presence or message-summary subscription, refreshed before its expiry
 * on the same subsession, kept across a resume and a page reload.
 */
export declare class Subscription extends Emitter {
  readonly id: string;
  readonly package: 'presence' | 'message_notification';
  readonly target: string;
  /** Sent on the subscribe and every refresh. */
  readonly headers: ExtensionHeaders;
  readonly state: 'pending' | 'active' | 'ended';
  /** Seconds the gateway granted; refreshed `Subscription.refreshLead(expiry)` ms before it runs out. */
  readonly expiry: number | null;
  /** When the last (re)subscribe went out, on the session's clock (kept across a page reload). */
  readonly refreshedAt: number | null;
  readonly last: PresenceStatus | MessageSummary | null;
  /** Resolves when the gateway accepted the subscription. */
  readonly ready: Promise<void>;
  /** Ends it (`shutdown`); opts.headers go on the shutdown. */
  end(opts?: HeaderOptions): void;
  /** How long before the expiry a refresh goes out, in ms: 15 % of it, at least 5 s, at most half. */
  static refreshLead(expirySeconds: number): number;
  on(event: 'notify', fn: (n: any, payload: Record<string, unknown>) => void): () => void;
  on(event: 'state', fn: (e: { state: string; previous: string }) => void): () => void;
  on(event: 'ended', fn: (err?: JsonRtcError) => void): () => void;
  /** Made again in a new session after a failed resume (a new `id`; state back to pending). */
  on(event: 'resubscribed', fn: (sub: Subscription) => void): () => void;
}

export declare const ErrorCode: Readonly<Record<string, number>>;
export declare const MAX_EXTENSION_HEADERS: 32;
/** Checks headers against docs/protocol.md §2.4 and returns a copy; throws JsonRtcError 400. */
export declare function extensionHeaders(headers?: ExtensionHeaders | null): ExtensionHeaders;
/** The extension headers of a received frame's header. */
export declare function extensionsOf(header?: Record<string, unknown>): ExtensionHeaders;
export declare function reasonOf(code: number): string;
export declare class JsonRtcError extends Error {
  constructor(code: number, reason?: string, frame?: object);
  static fromFrame(frame: object): JsonRtcError;
  readonly code: number;
  readonly reason: string;
  readonly frame?: object;
}

export declare function parseMessageSummary(payload: Record<string, unknown> | undefined): MessageSummary;
export declare function parseCounts(text: string): MessageCounts | null;
export declare function originSessionId(sdp: string): string | null;
export declare function mediaDirections(sdp: string): string[];
export declare function isHoldOffer(sdp: string): boolean;
export declare function candidatesToFragment(c: { candidate: string; sdpMid: string | null }[], end?: boolean, mids?: string[]): string;
export declare function fragmentToCandidates(fragment: string): { candidate: string; sdpMid: string }[];

export declare const DEFAULT_WINDOW: Readonly<{ frames: number; bytes: number }>;
export declare const Verdict: Readonly<{ DELIVER: 'deliver'; DUPLICATE: 'duplicate'; ACK_ONLY: 'ack'; UNSEQUENCED: 'unsequenced' }>;
export declare class WindowFullError extends Error { readonly code: 503 }
export declare class Reliability {
  constructor(window?: { frames?: number; bytes?: number });
  nextSeq: number;
  processed: number;
  acked: number;
  reset(processed: number): void;
  /** Numbering of the session that replaced one whose resume failed: the next frame is 2 (docs/protocol.md §4.5). */
  restartAfterFailedResume(processed: number): void;
  stamp<F extends { control: Record<string, unknown> }>(frame: F): F;
  receive(frame: object): { verdict: string; gap: number };
  receivedOutOfBand(seq: number): void;
  skipAhead(): void;
  ack(n: number): boolean;
  ackOwed(): boolean;
  resumeHeaders(): { cslr: number; cslw: number; csuw: number };
  resumed(sslr: number): object[];
  unsent(seq: number): object[];
  static sslrAcceptable(sslr: number, h: { cslw: number | null; csuw: number | null }): boolean;
  toJSON(): object;
  static fromJSON(data: object, window?: { frames?: number; bytes?: number }): Reliability;
}
export declare class Backoff {
  constructor(opts?: { initial?: number; max?: number; factor?: number; jitter?: number; random?: () => number });
  next(): number;
  reset(): void;
}
export declare class Keepalive {
  constructor(opts: { interval?: number; period?: number; clock?: Clock; sendPing: () => void; onDead: () => void });
  start(): void;
  stop(): void;
  activity(): void;
  setInterval(ms: number): void;
}
