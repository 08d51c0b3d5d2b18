// Fakes for the unit tests: a manual clock, a WebSocket and a Storage.

export class FakeClock {
  constructor() {
    this.t = 1_000_000;
    this.timers = new Map();
    this.nextId = 1;
  }
  now() {
    return this.t;
  }
  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms ?? 0), fn });
    return id;
  }
  clearTimeout(id) {
    this.timers.delete(id);
  }
  /** Advances time, running due timers in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let best = null;
      for (const [id, tm] of this.timers) if (tm.at <= end && (best === null || tm.at < best[1].at)) best = [id, tm];
      if (!best) break;
      this.timers.delete(best[0]);
      this.t = Math.max(this.t, best[1].at);
      best[1].fn();
    }
    this.t = end;
  }
  get clock() {
    return { now: () => this.now(), setTimeout: (f, ms) => this.setTimeout(f, ms), clearTimeout: (id) => this.clearTimeout(id) };
  }
}

export class FakeStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

/** Builds a WebSocket class whose instances are recorded in `sockets`. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.protocol = '';
      this.readyState = 0;
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error('not open');
      this.sent.push(text);
    }
    close(code, reason) {
      this.closed = { code, reason };
      this.readyState = 3;
    }
    // Test controls.
    open() {
      this.readyState = 1;
      this.protocol = this.protocols[0];
      this.onopen?.({});
    }
    receive(obj) {
      this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: '' });
    }
    frames() {
      return this.sent.filter((t) => t !== 'ping').map((t) => JSON.parse(t));
    }
    last() {
      const f = this.frames();
      return f[f.length - 1];
    }
  }
  return { FakeWebSocket, sockets };
}

/** A server frame. */
export function serverFrame(control, header = {}, payload) {
  const f = { control: { version: '1.0', ...control }, header };
  if (payload) f.payload = payload;
  return f;
}

/**
 * A Session (class S) over fake WebSockets, a fake clock and storage
 * (options.storage, or a new one); options are merged over the defaults.
 */
export function newSession(S, options = {}) {
  const fc = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const storage = options.storage ?? new FakeStorage();
  const session = new S({
    url: 'ws://127.0.0.1:1/ws/',
    identity: 'alice',
    WebSocket: FakeWebSocket,
    // The WebSocket path; test/longpoll.test.js has the fallback.
    transports: ['websocket'],
    clock: fc.clock,
    keepalive: { interval: 1000, period: 4000 },
    reconnect: { initial: 100, max: 1000, jitter: 0 },
    ...options,
    storage,
  });
  return { fc, sockets, storage, session };
}

/** newSession, connected as session S1. */
export async function connectedSession(S, options = {}) {
  const env = newSession(S, options);
  const p = env.session.connect();
  await new Promise((r) => setImmediate(r));
  const ws = env.sockets[0];
  ws.open();
  ws.receive(serverFrame({ type: 'response', package_type: 'register', session_id: 'S1', sequence: 1, ack_sequence: 1 }, { action: 'connect', initiator: 'alice@example.com' }));
  await p;
  return { ...env, ws };
}


/**
 * Asserts that the session's next socket opens ms after now on env.fc,
 * not a millisecond before (a backoff's or a Retry-After's wait).
 * @param {{fc: FakeClock, sockets: unknown[]}} env
 * @param {number} ms
 * @param {() => Promise<void>} flush the test file's
 * @param {string} why
 */
export async function opensAfter(env, ms, flush, why) {
  const n = env.sockets.length;
  env.fc.advance(ms - 1);
  await flush();
  if (env.sockets.length !== n) throw new Error(`${why}: a socket opened before ${ms} ms`);
  env.fc.advance(1);
  await flush();
  if (env.sockets.length !== n + 1) throw new Error(`${why}: no socket after ${ms} ms`);
}
