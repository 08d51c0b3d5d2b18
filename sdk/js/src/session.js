import { Emitter } from './emitter.js';
import { extensionHeaders, extensionsOf } from './headers.js';
import { JsonRtcError, ErrorCode } from './errors.js';
import { Reliability, Verdict, WindowFullError } from './reliability.js';
import { Backoff, retryAfterMs } from './backoff.js';
import { Keepalive, defaultClock } from './keepalive.js';
import { Call } from './call.js';
import { Subscription } from './subscription.js';
import { LongPollSocket, pollUrlOf } from './longpoll.js';
import { knownAction, declaredRequest, declaredResponse, IncomingRequest } from './declared.js';

/** The states a Session goes through (its `state` event). */
export const SessionState = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  RESUMED: 'resumed',
  /** Asleep on purpose: no socket, the gateway wakes it with a push (standby()). */
  STANDBY: 'standby',
  FAILED: 'failed',
  CLOSED: 'closed',
});

export const VERSION = '1.0';
export const SUBPROTOCOL = 'jsonrtc';

const STORAGE_FORMAT = 1;

/**
 * How long a request waits for its answer (ms), by `package.action`, by
 * action, or `default`; `progress` is the wait for the final answer once
 * a provisional one came (a call ringing: SIP's Timer C, 3 minutes). The
 * connect is bounded by `reconnect.attemptTimeout` instead.
 */
export const DEFAULT_REQUEST_TIMEOUTS = Object.freeze({ default: 30000, progress: 180000 });

function randomId() {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * A JSONrtc session with the gateway over one WebSocket at a time: connect,
 * automatic reconnect with resume, page-reload rehydration, keepalive and
 * acknowledgements (docs/protocol.md §1, §3 and §4). Calls, subscriptions
 * and messages run inside it.
 *
 * Events: `state` ({state, previous, error?}), `incomingcall` (Call),
 * `callrestored` (Call), `subscriptionrestored` (Subscription), `message`
 * (IncomingMessage), `resumefailed` ({previousId}), `requesttimeout`
 * ({package, action, timeout, frame}), `error` (Error).
 */
export class Session extends Emitter {
  /**
   * @param {import('./index.js').SessionOptions} options
   */
  constructor(options) {
    super();
    if (!options || typeof options.url !== 'string') throw new TypeError('Session: options.url is required');
    this.options = options;
    this.url = options.url;
    this.subprotocol = options.subprotocol ?? SUBPROTOCOL;
    /** The identity the session runs as (from the connect response). */
    this.identity = options.identity || null;
    /** The session id the gateway assigned. */
    this.id = null;
    this.state = SessionState.IDLE;
    /** @type {Map<string, Call>} */
    this.calls = new Map();
    /** Calls hung up here lately, by id, owed their media figures (_awaitFigures). */
    this._hungUp = new Map();
    /** @type {Map<string, Subscription>} */
    this.subscriptions = new Map();

    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._transports = options.transports ?? ['websocket', 'longpoll'];
    for (const t of this._transports) {
      if (t !== 'websocket' && t !== 'longpoll') throw new TypeError(`Session: unknown transport ${JSON.stringify(t)}`);
    }
    if (this._transports.length === 0) throw new TypeError('Session: options.transports is empty');
    this.pollUrl = options.longpoll?.url ?? pollUrlOf(this.url);
    this._fetch = options.longpoll?.fetch ?? options.fetch;
    this._maxBatch = options.longpoll?.maxBatch;
    /** The transport of the current (or last) socket: 'websocket' or 'longpoll'. */
    this.transport = null;
    this._transportIndex = 0;
    this._clock = options.clock ?? defaultClock;
    this._storage = options.storage === undefined ? globalThis.sessionStorage ?? null : options.storage;
    this._storageKey = options.storageKey ?? 'jsonrtc.session';
    this._ackDelay = options.ackDelay ?? 200;
    const ka = options.keepalive ?? {};
    this._idleInterval = ka.interval ?? 10000;
    this._busyInterval = ka.busyInterval ?? Math.min(3000, this._idleInterval);
    const rc = options.reconnect ?? {};
    this._reconnectTimeout = rc.timeout ?? 60000;
    this._attemptTimeout = rc.attemptTimeout ?? 10000;
    // A WebSocket that has not opened by then is given up for the next
    // transport: a proxy that swallows the upgrade never refuses it.
    this._openTimeout = rc.openTimeout ?? 5000;
    this._connectAttempts = rc.connectAttempts ?? 5;
    /** Retries of the first connect so far (_retryConnect). */
    this._connectTries = 0;
    this._backoff = new Backoff({ ...rc, random: rc.random });
    this._rel = new Reliability(options.window);
    this._requestTimeouts = { ...DEFAULT_REQUEST_TIMEOUTS, ...(options.requestTimeouts || {}) };
    /** Counters: requests that got no answer within their bound. */
    this.stats = { requestTimeouts: 0 };
    this._keepalive = new Keepalive({
      interval: this._idleInterval,
      period: ka.period ?? 30000,
      clock: this._clock,
      sendPing: () => this._sendText('ping'),
      onDead: () => this._onLinkDead(),
    });
    this.rtc = {
      RTCPeerConnection: options.rtc?.RTCPeerConnection ?? globalThis.RTCPeerConnection,
      getUserMedia:
        options.rtc?.getUserMedia ??
        ((c) => globalThis.navigator.mediaDevices.getUserMedia(c)),
      iceServers: options.rtc?.iceServers ?? [],
      iceTransportPolicy: options.rtc?.iceTransportPolicy ?? 'all',
      iceGatherTimeout: options.rtc?.iceGatherTimeout ?? 1000,
      trickle: options.rtc?.trickle ?? true,
    };
    this.log = options.logger ?? { debug() {}, info() {}, warn() {}, error() {} };

    /** @type {WebSocket|null} */
    this._ws = null;
    this._pending = new Map();
    this._ackTimer = null;
    this._attemptTimer = null;
    this._openTimer = null;
    this._retryTimer = null;
    this._aheadTimer = null;
    this._iceTimer = null;
    // The application's own iceServers win over the gateway's (§4.10);
    // an empty list is none (the demo page passes [] without config).
    this._ownIceServers = (options.rtc?.iceServers?.length ?? 0) > 0;
    /**
     * The ICE servers the gateway handed the session (connect response or
     * renewal, docs/protocol.md §4.10); null when it handed none.
     * @type {RTCIceServer[] | null}
     */
    this.gatewayIceServers = null;
    this._deadline = 0;
    this._resuming = false;
    this._reloading = null;
    this._closing = false;
    this._connectWaiters = [];
    this._onPageHide = () => this._save();
    // Automatic standby (options.standby.auto): asleep while the page is
    // hidden with nothing under way, awake when it shows again.
    this._doc = options.standby?.document ?? globalThis.document;
    this._onVisibility = () => {
      if (this._doc?.visibilityState === 'visible') {
        this.wake();
        return;
      }
      if (!this.connected || this.calls.size > 0) return;
      Promise.resolve()
        .then(() => this.options.standby.push())
        .then((push) => push && this.standby(push))
        .catch((err) => this.log.warn('jsonrtc: no standby', err));
    };
    this._onOnline = () => {
      if (this.state === SessionState.RECONNECTING && !this._ws) this._attemptNow();
    };
  }

  /** Whether frames flow now (connected or resumed). */
  get connected() {
    return this.state === SessionState.CONNECTED || this.state === SessionState.RESUMED;
  }

  /**
   * Whether sessionStorage holds a session this page can resume (a reload).
   * @param {{storage?: Storage|null, storageKey?: string}} [opts]
   */
  static hasStored(opts = {}) {
    const st = opts.storage === undefined ? globalThis.sessionStorage ?? null : opts.storage;
    try {
      return !!st?.getItem(opts.storageKey ?? 'jsonrtc.session');
    } catch {
      return false;
    }
  }

  /**
   * Opens the session. When sessionStorage holds this page's session (a
   * reload), it resumes it, with its calls and subscriptions; otherwise it
   * connects anew. Resolves once connected or resumed.
   * @returns {Promise<Session>}
   */
  connect() {
    if (this.connected) return Promise.resolve(this);
    if (this.state === SessionState.STANDBY) {
      const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
      this.wake();
      return p;
    }
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === SessionState.CONNECTING || this.state === SessionState.RECONNECTING) return p;
    this._closing = false;
    globalThis.addEventListener?.('pagehide', this._onPageHide);
    globalThis.addEventListener?.('online', this._onOnline);
    if (this.options.standby?.auto && typeof this.options.standby.push === 'function') {
      this._doc?.addEventListener?.('visibilitychange', this._onVisibility);
    }
    const stored = this.options.resume === false ? null : this._load();
    if (stored) {
      this.id = stored.id;
      this.identity = stored.identity;
      this._rel = Reliability.fromJSON(stored.rel, this.options.window);
      this._reloading = stored;
      // The calls rebuild their media while the socket opens (Call._warmUp);
      // they are announced once the resume succeeds (_rehydrate), and a
      // failed one ends them with the session's other calls.
      for (const data of stored.calls || []) {
        const call = Call.restore(this, data);
        this._addCall(call);
        call._warmUp();
      }
      this._resuming = true;
      this._deadline = this._clock.now() + this._reconnectTimeout;
      this._setState(SessionState.CONNECTING);
      this._open();
    } else {
      this.id = null;
      this._resuming = false;
      this._rel.reset(0);
      this._connectTries = 0;
      this._backoff.reset();
      this._setState(SessionState.CONNECTING);
      this._open();
    }
    return p;
  }

  /**
   * Logs out: closes the WebSocket with code 1000, which ends the session
   * on the gateway with its calls and subscriptions, and forgets the
   * stored session. A session with no socket attached (standby, or between
   * reconnects) is resumed on a socket of its own only to close it with
   * 1000, so that the gateway ends it now rather than at its standby or
   * resume timeout. Resolves once the gateway has the logout, or the
   * attempt gave up (then the session ends at its timeout).
   * @returns {Promise<void>}
   */
  close() {
    if (this.state === SessionState.CLOSED) return Promise.resolve();
    // The resume headers are read before the session forgets its state.
    const detached =
      this.id && !this.connected && this.state !== SessionState.FAILED
        ? { id: this.id, identity: this.identity, headers: this._rel.resumeHeaders() }
        : null;
    this._closing = true;
    this._dropSocket(1000, 'logout');
    this._published = null;
    this._endAll(new JsonRtcError(ErrorCode.NOT_CONNECTED, 'logged out'), 'ended');
    this._clearStored();
    this._rejectWaiters(new JsonRtcError(ErrorCode.NOT_CONNECTED, 'closed'));
    this._setState(SessionState.CLOSED);
    globalThis.removeEventListener?.('pagehide', this._onPageHide);
    globalThis.removeEventListener?.('online', this._onOnline);
    this._doc?.removeEventListener?.('visibilitychange', this._onVisibility);
    return detached ? this._logoutDetached(detached) : Promise.resolve();
  }

  /**
   * The logout of a session with no socket: a resume (docs/protocol.md
   * §4.4, with the same credentials as any connect: a session id alone
   * opens nothing) over the transports in order, closed with 1000 as soon
   * as the gateway answers it. A resume it refuses answered with a new
   * session, which the close ends as well. Each transport gets
   * reconnect.attemptTimeout.
   */
  async _logoutDetached(detached) {
    for (const [i, kind] of this._transports.entries()) {
      let url;
      try {
        url = await this._urlOf(kind);
      } catch (err) {
        this.log.warn('jsonrtc: logout:', kind, err);
        continue;
      }
      const answered = await new Promise((resolve) => {
        // Built with its handlers in one turn: a long-poll socket opens on
        // the next microtask.
        let ws;
        try {
          ws = this._socketTo(kind, url);
        } catch (err) {
          this.log.warn('jsonrtc: logout:', kind, err);
          resolve(false);
          return;
        }
        // As in a resume, a WebSocket that does not open leaves it to the
        // next transport after reconnect.openTimeout.
        const fallback = kind === 'websocket' && i + 1 < this._transports.length;
        let timer = this._clock.setTimeout(() => done(false), fallback ? this._openTimeout : this._attemptTimeout);
        const done = (ok) => {
          this._clock.clearTimeout(timer);
          this._detach(ws);
          try {
            ws.close(ok ? 1000 : 4001, ok ? 'logout' : 'logout attempt failed');
          } catch {
            /* already closed */
          }
          resolve(ok);
        };
        ws.onopen = () => {
          this._clock.clearTimeout(timer);
          timer = this._clock.setTimeout(() => done(false), this._attemptTimeout);
          ws.send(JSON.stringify(this._resumeFrame(detached.id, detached.identity, detached.headers)));
        };
        ws.onmessage = (ev) => {
          let f;
          try {
            f = JSON.parse(ev.data);
          } catch {
            return;
          }
          if (f?.header?.action === 'connect' && f.control?.type !== 'request') done(true);
        };
        ws.onclose = () => done(false);
        ws.onerror = () => {};
      });
      if (answered) return;
    }
    this.log.warn('jsonrtc: logout did not reach the gateway: the session ends at its timeout');
  }

  // ---- Standby (docs/protocol.md §4.9) --------------------------------------

  /**
   * Goes to sleep: tells the gateway how to wake this client (`push`: a
   * Web Push subscription, its toJSON(), or `{type: 'webhook', token}`),
   * then closes the socket. The session stays resumable for the gateway's
   * push.standby_timeout; the first call or message for it sends a push.
   * `wake()` (or `connect()`, or sending anything) resumes it. Refused
   * while a call is up.
   * @param {{type?: string, endpoint?: string, keys?: {p256dh: string, auth: string}, token?: string}} push
   * @returns {Promise<number>} how long the gateway keeps the session asleep (s)
   */
  async standby(push) {
    this._requireSession();
    if (!this.connected) throw new JsonRtcError(ErrorCode.NOT_CONNECTED, 'the session is not connected');
    if (this.calls.size > 0) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'a call is up: no standby');
    const channel = push?.toJSON ? push.toJSON() : { ...push };
    if (!channel.type) channel.type = channel.token ? 'webhook' : 'webpush';
    const resp = await this._request({ type: 'request', pkg: 'register', action: 'standby', payload: { push: channel } });
    const expiry = resp.header?.expiry ?? 0;
    if (!this.connected || this.calls.size > 0) return expiry; // things moved on meanwhile
    // Nothing owed to the gateway stays behind: it is in the retained window.
    this._dropSocket(4100, 'standby');
    this._setState(SessionState.STANDBY);
    this._save();
    return expiry;
  }

  /** Wakes a session in standby: it resumes at once. */
  wake() {
    if (this.state !== SessionState.STANDBY) return;
    this._resuming = true;
    this._deadline = this._clock.now() + this._reconnectTimeout;
    this._backoff.reset();
    this._setState(SessionState.RECONNECTING);
    this._attemptNow();
  }

  // ---- Calls, subscriptions, messaging ------------------------------------

  /**
   * Places a call.
   * @param {string} target who to call
   * @param {import('./index.js').CallOptions} [opts]
   * @returns {Call}
   */
  call(target, opts = {}) {
    this._requireSession();
    extensionHeaders(opts.headers);
    const call = new Call(this, { id: randomId(), direction: 'outgoing', caller: this.identity, callee: target, options: opts });
    this._addCall(call);
    call._startOutgoing();
    return call;
  }

  /**
   * Watches a presentity (presence package).
   * @param {string} target
   * @param {{headers?: Record<string, string|number|boolean>}} [opts] extension headers of every (re)subscribe
   * @returns {Subscription}
   */
  watchPresence(target, opts = {}) {
    return this._subscribe('presence', target, opts);
  }

  /**
   * Subscribes to a mailbox's message summary (message_notification).
   * @param {string} target
   * @param {{headers?: Record<string, string|number|boolean>}} [opts] extension headers of every (re)subscribe
   * @returns {Subscription}
   */
  subscribeMessageSummary(target, opts = {}) {
    return this._subscribe('message_notification', target, opts);
  }

  /**
   * Publishes this user's presence.
   * @param {{status: 'open'|'closed', activity?: string, note?: string}} state
   * @param {{headers?: Record<string, string|number|boolean>}} [opts]
   * @returns {Promise<number>} the response code
   */
  async publishPresence(state, opts = {}) {
    const headers = extensionHeaders(opts.headers);
    this._requireSession();
    // Published again if the session is lost (a failed resume).
    this._published = { ...state };
    const payload = { presentity: this.identity, status: state.status };
    if (state.activity) payload.activity = state.activity;
    if (state.note) payload.note = state.note;
    const resp = await this._request({
      type: 'request',
      pkg: 'presence',
      action: 'publish',
      subsession: randomId(),
      header: { initiator: this.identity, target: this.identity, ...headers },
      payload,
    });
    return resp.header?.response_code ?? 200;
  }

  /**
   * Sends an instant message (messaging package).
   * @param {string} target
   * @param {string} body
   * @param {{contentType?: string, headers?: Record<string, string|number|boolean>}} [opts]
   * @returns {Promise<number>} the response code (200 or 202)
   */
  async sendMessage(target, body, opts = {}) {
    const headers = extensionHeaders(opts.headers);
    this._requireSession();
    const resp = await this._request({
      type: 'request',
      pkg: 'messaging',
      action: 'send',
      subsession: randomId(),
      header: { initiator: this.identity, target, ...headers },
      payload: { content_type: opts.contentType ?? 'text/plain', body },
    });
    return resp.header?.response_code ?? 200;
  }

  /**
   * Sends a request of an action the gateway's configuration declares
   * (docs/protocol.md §2.8) outside any call, and resolves with its
   * response (rejects with a JsonRtcError on an error frame: a 400 names
   * the header or payload field the gateway's template refused).
   * @param {string} pkg the action's package (usually 'messaging')
   * @param {string} action
   * @param {Record<string, string|number|boolean>} [headers] extension headers
   * @param {object} [payload]
   * @param {{target?: string}} [opts] header.target: where an action mapped to SIP goes
   * @returns {Promise<import('./index.js').DeclaredResponse>}
   */
  async request(pkg, action, headers, payload, opts = {}) {
    const f = declaredRequest(pkg, action, headers, payload);
    this._requireSession();
    f.header = { initiator: this.identity, target: opts.target, ...f.header };
    return declaredResponse(await this._request(f));
  }

  /**
   * A request of an action the SDK does not know: the call's `request`
   * event, else the session's; 405 when nobody listens.
   */
  _onUnknownRequest(frame) {
    const c = frame.control;
    const call = (c.package_type || 'call') === 'call' ? (this.calls.get(c.subsession_id) ?? null) : null;
    const target = call && call.listenerCount('request') > 0 ? call : this.listenerCount('request') > 0 ? this : null;
    if (!target) {
      this._reject(frame, 405, `action ${frame.header?.action} is not handled`);
      return;
    }
    target.emit('request', new IncomingRequest(this, frame, call));
  }

  _subscribe(pkg, target, opts) {
    const headers = extensionHeaders(opts.headers);
    this._requireSession();
    for (const s of this.subscriptions.values()) {
      if (s.package === pkg && s.target === target && s.state !== 'ended') return s;
    }
    const sub = new Subscription(this, { id: randomId(), package: pkg, target, headers });
    this.subscriptions.set(sub.id, sub);
    sub._start();
    return sub;
  }

  _requireSession() {
    if (!this.id || this.state === SessionState.CLOSED || this.state === SessionState.FAILED) {
      throw new JsonRtcError(ErrorCode.NOT_CONNECTED, 'the session is not connected');
    }
  }

  _addCall(call) {
    this.calls.set(call.id, call);
    this._keepalive.setInterval(this._busyInterval);
  }

  /**
   * Keeps a call this session hung up until the gateway's shutdown with
   * its media figures comes (docs/protocol.md §5.8), the last 16: a call
   * whose media did not go through rtpengine gets none.
   */
  _awaitFigures(call) {
    this._hungUp.delete(call.id);
    this._hungUp.set(call.id, call);
    if (this._hungUp.size > 16) this._hungUp.delete(this._hungUp.keys().next().value);
  }

  _removeCall(call) {
    this.calls.delete(call.id);
    if (this.calls.size === 0) this._keepalive.setInterval(this._idleInterval);
    this._save();
  }

  _removeSubscription(sub) {
    this.subscriptions.delete(sub.id);
    this._save();
  }

  // ---- Sending ------------------------------------------------------------

  /**
   * Builds, numbers, retains and (when the link is up) transmits a frame.
   * Frames made while reconnecting are sent by the resume.
   * @param {{type: string, pkg: string, action?: string, subsession?: string,
   *          correlation?: string|true, state?: string, header?: object, payload?: object}} f
   * @returns {object} the frame sent
   */
  _send(f) {
    this._requireSession();
    const control = { type: f.type, package_type: f.pkg, session_id: this.id };
    if (f.subsession) control.subsession_id = f.subsession;
    if (f.correlation === true) control.correlation_id = 'c' + this._rel.nextSeq;
    else if (f.correlation) control.correlation_id = f.correlation;
    if (f.state) control.message_state = f.state;
    control.version = VERSION;
    const header = { action: f.action, ...(f.header || {}) };
    for (const k of Object.keys(header)) if (header[k] === undefined || header[k] === null) delete header[k];
    const frame = { control, header };
    if (f.payload && Object.keys(f.payload).length > 0) frame.payload = f.payload;
    try {
      this._rel.stamp(frame);
    } catch (err) {
      if (err instanceof WindowFullError) {
        this._fail(new JsonRtcError(ErrorCode.SERVICE_UNAVAILABLE, 'retained window full'));
        throw new JsonRtcError(ErrorCode.SERVICE_UNAVAILABLE, 'retained window full');
      }
      throw err;
    }
    if (this.connected) this._transmit(frame);
    else if (this.state === SessionState.STANDBY) this.wake();
    this._save();
    return frame;
  }

  /**
   * Sends a request and resolves with its final response (rejects with a
   * JsonRtcError on an `error` frame). Provisional responses go to
   * onProgress.
   * @returns {Promise<object>}
   */
  _request(f, onProgress) {
    return new Promise((resolve, reject) => {
      let frame;
      try {
        frame = this._send({ ...f, correlation: true });
      } catch (err) {
        reject(err);
        return;
      }
      const corr = frame.control.correlation_id;
      const p = { onProgress, frame, timer: null };
      const settle = (fn) => (v) => {
        this._clock.clearTimeout(p.timer);
        fn(v);
      };
      p.resolve = settle(resolve);
      p.reject = settle(reject);
      p.arm = (ms) => {
        this._clock.clearTimeout(p.timer);
        p.timer = this._clock.setTimeout(() => this._requestTimedOut(corr, ms), ms);
      };
      p.arm(this.requestTimeout(f.pkg, f.action));
      this._pending.set(corr, p);
    });
  }

  /**
   * The bound on the first answer to a request of pkg/action (ms).
   * @param {string} pkg
   * @param {string} action
   * @returns {number}
   */
  requestTimeout(pkg, action) {
    const t = this._requestTimeouts;
    return t[`${pkg}.${action}`] ?? t[action] ?? t.default;
  }

  /** A request got no (final) answer in time: it fails with 408, counted. */
  _requestTimedOut(corr, ms) {
    const p = this._pending.get(corr);
    if (!p) return;
    this._pending.delete(corr);
    const c = p.frame.control;
    const what = `${c.package_type}/${p.frame.header.action}`;
    this.stats.requestTimeouts++;
    this.log.warn('jsonrtc: no answer to', what, 'within', ms, 'ms');
    const err = new JsonRtcError(ErrorCode.TIMEOUT, `no answer to ${what} within ${ms / 1000} s`);
    err.timedOut = true;
    this.emit('requesttimeout', { package: c.package_type, action: p.frame.header.action, timeout: ms, frame: p.frame });
    p.reject(err);
  }

  _transmit(frame) {
    if (!this._ws || this._ws.readyState !== 1) return;
    if (frame.control.type !== 'acknowledgement') {
      // The frame carries the latest ack: a pending standalone one is moot.
      if (this._rel.processed) frame.control.ack_sequence = this._rel.processed;
      this._rel.ackSent = this._rel.processed;
    }
    const text = JSON.stringify(frame);
    this.log.debug('jsonrtc >', text);
    this._ws.send(text);
  }

  _sendText(text) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(text);
  }

  _scheduleAck() {
    if (this._ackTimer !== null) return;
    this._ackTimer = this._clock.setTimeout(() => {
      this._ackTimer = null;
      if (!this.connected || !this._rel.ackOwed()) return;
      const frame = {
        control: { type: 'acknowledgement', package_type: 'register', session_id: this.id, version: VERSION },
      };
      this._rel.stamp(frame);
      this._transmit(frame);
      this._save();
    }, this._ackDelay);
  }

  // ---- Socket -------------------------------------------------------------

  /**
   * One connect or resume attempt: the transports in order of preference,
   * each tried once, until one carries the connect response. Every
   * attempt starts again from the first, so a session that fell back to
   * long-poll moves back to the WebSocket at its next resume.
   */
  _open() {
    this._transportIndex = 0;
    this._openTransport();
  }

  /** A socket of the transport kind to url (which carries the token). */
  _socketTo(kind, url) {
    if (kind === 'longpoll') return new LongPollSocket(url, { fetch: this._fetch, maxBatch: this._maxBatch });
    if (typeof this._WebSocket !== 'function') throw new Error('no WebSocket in this environment');
    return new this._WebSocket(url, [this.subprotocol]);
  }

  _urlOf(kind) {
    return this._urlWithToken(kind === 'longpoll' ? this.pollUrl : this.url);
  }

  async _openTransport() {
    const kind = this._transports[this._transportIndex];
    let url;
    try {
      url = await this._urlOf(kind);
    } catch (err) {
      this._socketFailed(err);
      return;
    }
    if (this._closing) return;
    let ws;
    try {
      ws = this._socketTo(kind, url);
    } catch (err) {
      this._socketFailed(err);
      return;
    }
    this._ws = ws;
    this.transport = kind;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev);
    ws.onerror = () => {};
    this._clock.clearTimeout(this._attemptTimer);
    this._attemptTimer = this._clock.setTimeout(() => {
      // An attempt that does not complete in time is abandoned.
      if (this._ws === ws && !this.connected) this._abandon(ws, 'attempt timeout');
    }, this._attemptTimeout);
    if (kind === 'websocket' && this._transportIndex + 1 < this._transports.length) {
      this._clock.clearTimeout(this._openTimer);
      this._openTimer = this._clock.setTimeout(() => {
        this._openTimer = null;
        if (this._ws === ws && ws.readyState === 0) this._abandon(ws, 'open timeout');
      }, this._openTimeout);
    }
  }

  /**
   * Whether a socket that failed before the connect response leaves
   * another transport to try in this attempt; if so it is tried now.
   */
  _nextTransport() {
    if (this.connected || this._closing || this._transportIndex + 1 >= this._transports.length) return false;
    this.log.info('jsonrtc: transport did not open:', this._transports[this._transportIndex]);
    this._transportIndex++;
    this._openTransport();
    return true;
  }

  async _urlWithToken(base) {
    let token = this.options.token;
    if (typeof token === 'function') token = await token();
    if (!token) return base;
    const u = new URL(base, globalThis.location?.href);
    u.searchParams.set('access_token', token);
    return u.toString();
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _abandon(ws, reason) {
    this._detach(ws);
    try {
      ws.close(4001, reason);
    } catch {
      /* ignore */
    }
    if (this._ws === ws) this._ws = null;
    if (this._nextTransport()) return;
    this._onLinkLost();
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    this._clock.clearTimeout(this._openTimer);
    this._openTimer = null;
    if (ws.protocol && ws.protocol !== this.subprotocol) {
      this.log.warn('jsonrtc: server chose subprotocol', ws.protocol);
    }
    if (this._resuming) {
      const text = JSON.stringify(this._resumeFrame(this.id, this.identity, this._rel.resumeHeaders()));
      this.log.debug('jsonrtc >', text);
      ws.send(text);
    } else {
      this._rel.reset(0);
      const header = { action: 'connect' };
      if (this.options.identity) {
        header.initiator = this.options.identity;
        header.target = this.options.identity;
      }
      const frame = { control: { type: 'request', package_type: 'register', version: VERSION }, header };
      this._rel.stamp(frame);
      const text = JSON.stringify(frame);
      this.log.debug('jsonrtc >', text);
      ws.send(text);
    }
  }

  /** The resume connect of docs/protocol.md §4.4. */
  _resumeFrame(id, identity, h) {
    const frame = {
      control: { type: 'request', package_type: 'register', session_id: id, version: VERSION },
      header: { action: 'connect', initiator: identity ?? undefined, cslr: h.cslr, cslw: h.cslw, csuw: h.csuw },
    };
    if (frame.header.initiator === undefined) delete frame.header.initiator;
    return frame;
  }

  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    this._keepalive.activity();
    if (typeof data !== 'string') return;
    if (data === 'pong') return;
    this.log.debug('jsonrtc <', data);
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this.emit('error', new JsonRtcError(ErrorCode.BAD_REQUEST, 'a frame from the server is not JSON'));
      return;
    }
    if (!frame || typeof frame !== 'object' || !frame.control) return;
    const c = frame.control;
    const h = frame.header || {};
    if (h.action === 'connect' && (c.type === 'response' || c.type === 'error')) {
      this._onConnectResponse(frame);
      return;
    }
    if (!this.connected) return;
    const { verdict, gap } = this._rel.receive(frame);
    if (verdict === Verdict.ACK_ONLY) {
      this._save();
      return;
    }
    if (verdict === Verdict.DUPLICATE) {
      this.log.debug('jsonrtc: duplicate frame', c.sequence);
      this._scheduleAck();
      return;
    }
    if (gap > 0) this.log.warn('jsonrtc: server sequence gap of', gap);
    this._scheduleAck();
    try {
      this._dispatch(frame);
    } finally {
      this._save();
    }
  }

  _onConnectResponse(frame) {
    const c = frame.control;
    const h = frame.header || {};
    this._clock.clearTimeout(this._attemptTimer);
    if (c.type === 'error') {
      if ((h.error_code === 401 || h.error_code === 407) && this._answerConnectChallenge(frame)) return;
      const err = JsonRtcError.fromFrame(frame);
      // Its retry_after is the least wait before the next attempt.
      const after = retryAfterMs(h.retry_after);
      if (h.error_code === ErrorCode.SERVICE_UNAVAILABLE && this._resuming) {
        // A resume refused for now is tried again as after a socket loss,
        // until reconnect.timeout, as the Go client does; any other
        // refusal of it (401, 403) is final (docs/protocol.md §4.5).
        this._resumeRefusedForNow(`error 503 ${h.reason || ''}`.trim(), after);
        return;
      }
      if (h.error_code === ErrorCode.SERVICE_UNAVAILABLE && this._retryConnect(err, after)) return;
      this._fail(err);
      return;
    }
    this._authTries = 0;
    const wasReload = this._reloading;
    this._reloading = null;
    if (this._resuming && c.session_id === this.id) {
      this._resuming = false;
      if (typeof c.ack_sequence === 'number') this._rel.ack(c.ack_sequence);
      let resend;
      try {
        resend = this._rel.resumed(h.sslr);
      } catch (err) {
        this.emit('error', new JsonRtcError(ErrorCode.BAD_REQUEST, `resume response: ${err.message}`, frame));
        resend = this._rel.unsent(this._rel.acked);
      }
      this._rel.receivedOutOfBand(c.sequence);
      if (h.initiator) this.identity = h.initiator;
      this._setState(SessionState.RESUMED);
      this._afterConnect(h);
      for (const f of resend) this._transmit(f);
      if (this._rel.ahead.length > 0) {
        this._clock.clearTimeout(this._aheadTimer);
        this._aheadTimer = this._clock.setTimeout(() => this._rel.skipAhead(), 2000);
      }
      if (wasReload) this._rehydrate(wasReload);
      else for (const call of this.calls.values()) call._onSessionResumed();
      this._scheduleAck();
      this._save();
      this._resolveWaiters();
      return;
    }
    if (this._resuming) {
      this._onResumeFailed(frame);
      return;
    }
    this.id = c.session_id;
    this.identity = h.initiator || this.identity;
    this._rel.receive(frame);
    this._setState(SessionState.CONNECTED);
    this._afterConnect(h);
    this._scheduleAck();
    this._save();
    this._resolveWaiters();
  }

  /**
   * A new session id answered our resume: the gateway could not resume
   * the session (docs/protocol.md §4.5). The new session starts clean and
   * works at once; what the SDK can restore it restores: the
   * subscriptions (the same Subscription objects, re-subscribed on new
   * subsessions: watched contacts stay watched, voicemail stays
   * subscribed) and the published presence. Calls cannot be restored:
   * each ends (`failed`, code 1002) with the reason, and `resumefailed`
   * lists them.
   */
  _onResumeFailed(frame) {
    const c = frame.control;
    const h = frame.header || {};
    const previousId = this.id;
    this._resuming = false;
    const subs = [...this.subscriptions.values()].filter((sub) => sub.state !== 'ended');
    this.subscriptions.clear();
    this.id = c.session_id;
    this.identity = h.initiator || this.identity;
    this._rel.restartAfterFailedResume(typeof c.sequence === 'number' ? c.sequence : 0);
    const lost = new JsonRtcError(ErrorCode.SESSION_LOST, 'the session could not be resumed');
    // Requests of the old session never get their answer. (A subscription's
    // own start fails too, and is made again below.)
    for (const p of this._pending.values()) p.reject(lost);
    this._pending.clear();
    const reason = 'the gateway could not resume the session (restarted, or the resume came too late): the call was lost';
    const endedCalls = [];
    for (const call of [...this.calls.values()]) {
      endedCalls.push({ call, code: ErrorCode.SESSION_LOST, reason });
      call._terminate('failed', { code: ErrorCode.SESSION_LOST, reason, by: 'session' });
    }
    this._setState(SessionState.CONNECTED);
    this._afterConnect(h);
    for (const sub of subs) {
      sub._resubscribe(randomId());
      this.subscriptions.set(sub.id, sub);
    }
    if (this._published) this.publishPresence(this._published).catch((err) => this.log.warn('jsonrtc: presence not published again', err));
    this.emit('resumefailed', { previousId, endedCalls, resubscribed: subs });
    this._save();
    this._resolveWaiters();
  }

  _afterConnect(h) {
    this._takeIceServers(h);
    this._backoff.reset();
    this._keepalive.setInterval(this.calls.size > 0 ? this._busyInterval : this._idleInterval);
    this._keepalive.start();
  }

  /**
   * Keeps the ICE servers of a connect or ice_servers response header h
   * (docs/protocol.md §4.10): the peer connections use them unless the
   * application gave rtc.iceServers, and they are renewed once 80% of
   * ice_servers_ttl has passed (a resume's connect response renews them
   * too), so that a TURN credential never runs out under a call.
   */
  _takeIceServers(h) {
    if (typeof h?.ice_servers !== 'string') return;
    let servers;
    try {
      servers = JSON.parse(h.ice_servers);
    } catch (err) {
      this.log.warn('jsonrtc: ice_servers header undecodable', err);
      return;
    }
    if (!Array.isArray(servers)) return;
    this.gatewayIceServers = servers;
    if (!this._ownIceServers) this.rtc.iceServers = servers;
    this._clock.clearTimeout(this._iceTimer);
    this._iceTimer = null;
    if (typeof h.ice_servers_ttl === 'number' && h.ice_servers_ttl > 0) {
      this._iceTimer = this._clock.setTimeout(() => {
        this._iceTimer = null;
        this.renewIceServers().catch((err) => this.log.warn('jsonrtc: ICE servers not renewed', err));
      }, h.ice_servers_ttl * 800);
    }
  }

  /**
   * Asks the gateway for fresh ICE servers (a new TURN credential) with
   * request/ice_servers (docs/protocol.md §4.10); the SDK does it by
   * itself before the credential expires.
   * @returns {Promise<RTCIceServer[] | null>}
   */
  async renewIceServers() {
    this._requireSession();
    if (!this.connected) throw new JsonRtcError(ErrorCode.NOT_CONNECTED, 'the session is not connected');
    const resp = await this._request({ type: 'request', pkg: 'register', action: 'ice_servers' });
    this._takeIceServers(resp.header);
    return this.gatewayIceServers;
  }

  _onClose(ws, ev) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._detach(ws);
    if (this._closing) return;
    if (ev?.code === 4000) {
      // Another connection resumed this session (docs/protocol.md §4.4).
      this._fail(new JsonRtcError(ErrorCode.SESSION_LOST, 'the session was taken over by another connection'));
      return;
    }
    if (ev?.code === 1008 || ev?.code === 1009 || ev?.code === 1007) {
      this._fail(new JsonRtcError(ErrorCode.WEBSOCKET_ERROR, `closed by the server: ${ev.code} ${ev.reason || ''}`.trim()));
      return;
    }
    // A browser does not show a refused upgrade's HTTP status (it is a
    // 1006); long-poll does (LongPollSocket.status).
    if (ws.status === 401 || ws.status === 403) {
      // A refused identity is final, for a resume too: the token (fetched
      // again for each attempt when options.token is a function) is
      // refused on every node (docs/protocol.md §4.5).
      this._fail(new JsonRtcError(ws.status, `the gateway refused the ${this._resuming ? 'resume' : 'connect'}: HTTP ${ws.status}`));
      return;
    }
    if (this.state === SessionState.CONNECTING && !this._resuming && (ev?.code === 1013 || ws.status === 503)) {
      const why = ev?.code === 1013 ? `closed 1013 ${ev.reason || ''}`.trim() : 'HTTP 503';
      const err = new JsonRtcError(ErrorCode.SERVICE_UNAVAILABLE, `the gateway refused the connect for now: ${why}`);
      if (!this._retryConnect(err, ws.retryAfter ?? 0)) this._fail(err);
      return;
    }
    if (this._nextTransport()) return;
    // Long-poll's refusal (HTTP 503) may say when to come back.
    this._onLinkLost(ws.retryAfter ?? 0);
  }

  /**
   * Tries a first connect again that the gateway refused for now (error
   * 503 answering it, a close 1013, long-poll's HTTP 503: an overloaded
   * or draining gateway, docs/protocol.md §4.2), as the Go client does:
   * on a new socket, after the reconnect backoff, at most
   * reconnect.connectAttempts attempts in all, and not before the
   * refusal's Retry-After (retry_after) asked. Reports whether it will.
   * @param {JsonRtcError} err
   * @param {number} [after] the least wait, ms
   */
  _retryConnect(err, after = 0) {
    if (this._closing || this._connectTries + 1 >= this._connectAttempts) return false;
    this._connectTries++;
    this._dropSocket(4001, 'connect refused for now');
    // The backoff's first delay (none) went to the first attempt: a
    // refused gateway is not asked again at once.
    if (this._backoff.attempt === 0) this._backoff.next();
    const delay = Math.max(this._backoff.next(), after);
    this.log.info(`jsonrtc: connect refused for now (${err.message}); attempt ${this._connectTries + 1} in ${delay} ms`);
    this._retryTimer = this._clock.setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
    return true;
  }

  /**
   * A resume the gateway answered error 503 (docs/protocol.md §4.5): the
   * socket is given up and the resume tried again after the backoff, as
   * after a socket loss, until reconnect.timeout, and not before its
   * retry_after asked.
   * @param {string} why
   * @param {number} after the least wait, ms
   */
  _resumeRefusedForNow(why, after) {
    const ws = this._ws;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(4001, 'resume refused for now');
      } catch {
        /* ignore */
      }
      this._ws = null;
    }
    this.log.info(`jsonrtc: resume refused for now (${why}); trying again`);
    this._onLinkLost(after);
  }

  _socketFailed(err) {
    this._ws = null;
    if (this._nextTransport()) return;
    if (this.state === SessionState.CONNECTING && !this._resuming) {
      this._fail(new JsonRtcError(ErrorCode.WEBSOCKET_ERROR, err?.message || 'cannot open the WebSocket'));
      return;
    }
    this._onLinkLost();
  }

  /** The keepalive gave up on the current socket. */
  _onLinkDead() {
    const ws = this._ws;
    if (ws) this._abandon(ws, 'no pong');
    else this._onLinkLost();
  }

  /** @param {number} [after] the least wait before the next attempt, ms */
  _onLinkLost(after = 0) {
    this._keepalive.stop();
    if (this._closing || this.state === SessionState.FAILED || this.state === SessionState.CLOSED) return;
    if (this.state === SessionState.CONNECTING && !this._resuming) {
      this._fail(new JsonRtcError(ErrorCode.WEBSOCKET_ERROR, 'cannot connect to the gateway'));
      return;
    }
    if (this.connected) {
      this._resuming = true;
      this._deadline = this._clock.now() + this._reconnectTimeout;
      this._backoff.reset();
      this._setState(SessionState.RECONNECTING);
    }
    this._scheduleAttempt(after);
  }

  /** @param {number} [after] the least wait, ms */
  _scheduleAttempt(after = 0) {
    if (this._clock.now() >= this._deadline) {
      this._fail(new JsonRtcError(ErrorCode.SESSION_LOST, 'reconnect timed out'));
      return;
    }
    const delay = Math.max(this._backoff.next(), after);
    this._clock.clearTimeout(this._retryTimer);
    this._retryTimer = this._clock.setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
  }

  _attemptNow() {
    this._clock.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._backoff.reset();
    this._open();
  }

  _clearTimers() {
    for (const t of ['_ackTimer', '_attemptTimer', '_retryTimer', '_aheadTimer', '_openTimer', '_iceTimer']) {
      if (this[t] !== null) this._clock.clearTimeout(this[t]);
      this[t] = null;
    }
  }

  _fail(err) {
    if (this.state === SessionState.FAILED || this.state === SessionState.CLOSED) return;
    this._closing = true;
    // The session is over: close 1000 so that the gateway ends it too.
    this._dropSocket(1000, 'session failed');
    this._endAll(err, 'failed');
    this._clearStored();
    this._rejectWaiters(err);
    this._setState(SessionState.FAILED, err);
  }

  /** Stops the timers and the keepalive, and closes the socket with code. */
  _dropSocket(code, reason) {
    this._clearTimers();
    this._keepalive.stop();
    const ws = this._ws;
    this._ws = null;
    if (!ws) return;
    this._detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  _endAll(err, how) {
    for (const call of [...this.calls.values()]) call._terminate(how, { code: err.code, reason: err.reason, by: 'session' });
    for (const sub of [...this.subscriptions.values()]) sub._ended(err);
    for (const p of this._pending.values()) p.reject(err);
    this._pending.clear();
  }

  _setState(state, error) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.emit('state', { state, previous, error });
  }

  _resolveWaiters() {
    const w = this._connectWaiters;
    this._connectWaiters = [];
    for (const x of w) x.resolve(this);
  }

  _rejectWaiters(err) {
    const w = this._connectWaiters;
    this._connectWaiters = [];
    for (const x of w) x.reject(err);
  }

  // ---- Registrar digest challenges (docs/protocol.md §4.8) ---------------

  /**
   * Answers a connect's 401/407 with `options.authorize`: a new connect
   * (the next sequence, or none while resuming) carrying its result as
   * header.authorization. At most three tries per connect.
   * @returns {boolean} whether an answer is on its way
   */
  _answerConnectChallenge(frame) {
    const authorize = this.options.authorize;
    const h = frame.header || {};
    if (typeof authorize !== 'function' || !h.authenticate || (this._authTries ?? 0) >= 3) return false;
    this._authTries = (this._authTries ?? 0) + 1;
    const ws = this._ws;
    Promise.resolve()
      .then(() => authorize(h.authenticate))
      .then(
        (authorization) => {
          if (ws !== this._ws || this.connected) return;
          const header = { action: 'connect', authorization };
          if (this.options.identity) {
            header.initiator = this.options.identity;
            header.target = this.options.identity;
          }
          const f = { control: { type: 'request', package_type: 'register', version: VERSION }, header };
          if (this._resuming) f.control.session_id = this.id;
          else this._rel.stamp(f);
          const text = JSON.stringify(f);
          this.log.debug('jsonrtc >', text);
          ws.send(text);
          this._clock.clearTimeout(this._attemptTimer);
          this._attemptTimer = this._clock.setTimeout(() => {
            if (this._ws === ws && !this.connected) this._abandon(ws, 'attempt timeout');
          }, this._attemptTimeout);
        },
        (err) => this._fail(new JsonRtcError(h.error_code, `authorize: ${err?.message ?? err}`, frame)),
      );
    return true;
  }

  /**
   * Answers the gateway's live challenge (request/authenticate: a
   * registration refresh the gateway cannot answer itself) with
   * `options.authorize`, as the connect's; without it, or when it fails,
   * with error 401, and the gateway's registration is lost.
   */
  _onAuthenticate(frame) {
    const c = frame.control;
    const h = frame.header || {};
    const authorize = this.options.authorize;
    const answer = (authorization) => {
      if (this.id !== c.session_id && c.session_id) return;
      this._send({
        type: 'response',
        pkg: 'register',
        action: 'authenticate',
        correlation: c.correlation_id,
        state: 'final',
        header: { response_code: 200, authorization },
      });
    };
    const refuse = (reason) => {
      if (this.id !== c.session_id && c.session_id) return;
      this._reject(frame, 401, reason);
    };
    if (typeof authorize !== 'function') {
      refuse('no credentials');
      return;
    }
    Promise.resolve()
      .then(() => authorize(h.authenticate))
      .then(answer, (err) => refuse(`authorize: ${err?.message ?? err}`))
      .catch((err) => this.log.warn('jsonrtc: answering the challenge', err));
  }

  // ---- Inbound dispatch ---------------------------------------------------

  _dispatch(frame) {
    const c = frame.control;
    const h = frame.header || {};
    if ((c.type === 'response' || c.type === 'error') && c.correlation_id && this._pending.has(c.correlation_id)) {
      const p = this._pending.get(c.correlation_id);
      if (c.type === 'response' && c.message_state === 'subsequent') {
        // An answer is coming: the final one may take as long as a ringing phone.
        p.arm(this._requestTimeouts.progress);
        p.onProgress?.(frame);
        return;
      }
      this._pending.delete(c.correlation_id);
      if (c.type === 'error') p.reject(JsonRtcError.fromFrame(frame));
      else p.resolve(frame);
      if (h.error_code !== 500) return;
    }
    if (c.type === 'error' && h.error_code === 500) {
      this._fail(JsonRtcError.fromFrame(frame));
      return;
    }
    if (c.type === 'error' && !c.correlation_id) {
      this.emit('error', JsonRtcError.fromFrame(frame));
      return;
    }
    const pkg = c.package_type || 'call';
    if (c.type === 'request' && !knownAction(pkg, h.action)) return this._onUnknownRequest(frame);
    switch (pkg) {
      case 'call':
        return this._dispatchCall(frame);
      case 'presence':
      case 'message_notification': {
        const sub = this.subscriptions.get(c.subsession_id);
        if (sub) sub._onFrame(frame);
        else if (c.type === 'request') this._reject(frame, 405, 'no such subscription');
        return;
      }
      case 'messaging':
        return this._dispatchMessaging(frame);
      case 'register':
        if (c.type === 'request' && h.action === 'authenticate') return this._onAuthenticate(frame);
        if (c.type === 'request') this._reject(frame, 405, 'already connected');
        return;
      default:
        if (c.type === 'request') this._reject(frame, 405, 'unknown package');
    }
  }

  _dispatchCall(frame) {
    const c = frame.control;
    const h = frame.header || {};
    const call = this.calls.get(c.subsession_id);
    if (call) {
      call._onFrame(frame);
      return;
    }
    if (c.type === 'message' && h.action === 'shutdown') {
      // The gateway's answer to our own shutdown: the media's figures.
      const ended = this._hungUp.get(c.subsession_id);
      this._hungUp.delete(c.subsession_id);
      const media = frame.payload?.media;
      if (ended && Array.isArray(media)) ended.emit('media', { media, by: 'local' });
      return;
    }
    if (c.type === 'request' && h.action === 'start') {
      const incoming = new Call(this, {
        id: c.subsession_id,
        direction: 'incoming',
        caller: h.initiator,
        callee: h.target || this.identity,
        options: {},
        offer: frame,
      });
      this._addCall(incoming);
      incoming._ring();
      this.emit('incomingcall', incoming);
      return;
    }
    if (c.type === 'request') this._reject(frame, 405, 'no such call');
  }

  _dispatchMessaging(frame) {
    const c = frame.control;
    const h = frame.header || {};
    if (c.type !== 'request' || h.action !== 'send') return;
    const p = frame.payload || {};
    const msg = {
      from: h.initiator,
      to: h.target,
      contentType: p.content_type ?? 'text/plain',
      body: p.body ?? '',
      headers: extensionsOf(h),
      frame,
    };
    this._send({
      type: 'response',
      pkg: 'messaging',
      action: 'send',
      subsession: c.subsession_id,
      correlation: c.correlation_id,
      state: 'final',
      header: { initiator: h.initiator, target: h.target, response_code: 200, reason: 'OK' },
    });
    this.emit('message', msg);
  }

  /** Answers a request with an error frame. */
  _reject(frame, code, reason) {
    const c = frame.control;
    const h = frame.header || {};
    this._send({
      type: 'error',
      pkg: c.package_type || 'call',
      action: h.action,
      subsession: c.subsession_id,
      correlation: c.correlation_id,
      header: { error_code: code, reason },
    });
  }

  // ---- Page-reload persistence --------------------------------------------

  _storageBase() {
    return { url: this.url, requested: this.options.identity || null };
  }

  _save() {
    if (!this._storage || !this.id) return;
    if (this.state === SessionState.FAILED || this.state === SessionState.CLOSED || this._reloading) return;
    const data = {
      v: STORAGE_FORMAT,
      ...this._storageBase(),
      id: this.id,
      identity: this.identity,
      rel: this._rel.toJSON(),
      calls: [...this.calls.values()].map((c) => c._snapshot()).filter(Boolean),
      subscriptions: [...this.subscriptions.values()].map((s) => s._snapshot()).filter(Boolean),
    };
    try {
      this._storage.setItem(this._storageKey, JSON.stringify(data));
    } catch (err) {
      this.log.warn('jsonrtc: cannot save the session', err);
    }
  }

  _load() {
    if (!this._storage) return null;
    try {
      const text = this._storage.getItem(this._storageKey);
      if (!text) return null;
      const data = JSON.parse(text);
      const base = this._storageBase();
      if (data.v !== STORAGE_FORMAT || data.url !== base.url || data.requested !== base.requested || !data.id) {
        this._clearStored();
        return null;
      }
      return data;
    } catch {
      return null;
    }
  }

  _clearStored() {
    try {
      this._storage?.removeItem(this._storageKey);
    } catch {
      /* ignore */
    }
  }

  _rehydrate(stored) {
    for (const s of stored.subscriptions || []) {
      const sub = Subscription.restore(this, s);
      this.subscriptions.set(sub.id, sub);
      this.emit('subscriptionrestored', sub);
    }
    for (const data of stored.calls || []) {
      const call = this.calls.get(data.id) ?? Call.restore(this, data);
      this._addCall(call);
      if (call.state === 'ringing') this.emit('incomingcall', call);
      else this.emit('callrestored', call);
      call._resumeAfterReload();
    }
  }
}
