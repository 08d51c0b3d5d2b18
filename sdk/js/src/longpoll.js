/**
 * The HTTP long-poll transport of docs/protocol.md §1.6, seen by the
 * Session as a WebSocket (readyState, send, close, onopen, onmessage,
 * onclose), so that the same session and reliability code runs over
 * either transport.
 *
 * The first POST carries the connect and takes the connection's token
 * (`Jsonrtc-Poll-Token`); every later request carries it. Frames sent
 * while a POST is under way go, in order, in the next one: a JSON array
 * of at most `maxBatch` frames; the keepalive `ping` goes in a POST of its
 * own, whose 204 is the `pong`. One GET is held at a time; its frames are
 * handed to onmessage one by one, and a `Jsonrtc-Close-Code` header on it
 * closes the socket with that code. Any failed request, or an answer that
 * §1.6 does not list, closes it with 1006, as a broken TCP connection
 * ends a WebSocket: the Session resumes.
 */

import { retryAfterMs } from './backoff.js';

export const POLL_TOKEN = 'Jsonrtc-Poll-Token';
export const POLL_CLOSE_CODE = 'Jsonrtc-Close-Code';
export const POLL_CLOSE_REASON = 'Jsonrtc-Close-Reason';

/** The gateway's longpoll.max_batch default. */
export const DEFAULT_MAX_BATCH = 32;

/**
 * The long-poll URL of the gateway whose WebSocket URL is `url`: http(s)
 * for ws(s), `/poll/` for `/ws/`.
 * @param {string} url
 * @returns {string}
 */
export function pollUrlOf(url) {
  let u = url;
  if (u.startsWith('wss://')) u = 'https://' + u.slice(6);
  else if (u.startsWith('ws://')) u = 'http://' + u.slice(5);
  return u.replace('/ws/', '/poll/');
}

export class LongPollSocket {
  /**
   * @param {string} url the /poll/ URL
   * @param {{fetch?: typeof fetch, maxBatch?: number}} [opts]
   */
  constructor(url, opts = {}) {
    this.url = url;
    this.protocol = 'jsonrtc';
    this.readyState = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._fetch = opts.fetch ?? globalThis.fetch?.bind(globalThis);
    this._maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    this._token = null;
    /** The refusal's HTTP status and Retry-After (ms), once refused. */
    this.status = 0;
    this.retryAfter = 0;
    this._queue = [];
    this._posting = false;
    this._abort = new AbortController();
    // There is no handshake before the first POST, which carries the
    // connect: the socket is open at once, asynchronously as a WebSocket's.
    Promise.resolve().then(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({});
    });
  }

  /** Queues a frame for the next POST. */
  send(text) {
    if (this.readyState !== 1) throw new Error('long-poll socket is not open');
    // A keepalive ping is POSTed on its own, in its turn: its 204 is the
    // pong (docs/protocol.md §1.6).
    this._queue.push(text);
    if (!this._posting) {
      this._posting = true;
      // Frames sent in the same turn (a resume's resends) share a POST.
      Promise.resolve().then(() => this._post());
    }
  }

  /**
   * Closes the socket. 1000 is the logout: a DELETE ends the session. Any
   * other code only stops the requests; the gateway then loses the
   * connection after longpoll.idle_timeout and the session waits for a
   * resume, as after a WebSocket close.
   */
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    const token = this._token;
    this._end(code, reason, true);
    if (code === 1000 && token) {
      // keepalive: the logout still goes out when the page is unloading.
      this._fetch(this.url, { method: 'DELETE', headers: { [POLL_TOKEN]: token }, credentials: 'include', keepalive: true }).catch(() => {});
    }
  }

  _end(code, reason, byClient) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._queue = [];
    this._abort.abort();
    const ev = { code, reason, wasClean: byClient || code !== 1006 };
    Promise.resolve().then(() => this.onclose?.(ev));
  }

  _lost(reason) {
    this._end(1006, reason, false);
  }

  _headers(json) {
    const h = {};
    if (this._token) h[POLL_TOKEN] = this._token;
    if (json) h['Content-Type'] = 'application/json';
    return h;
  }

  async _post() {
    while (this.readyState === 1 && this._queue.length > 0) {
      const ping = this._queue[0] === 'ping';
      let n = 1;
      if (!ping) while (n < this._queue.length && n < this._maxBatch && this._queue[n] !== 'ping') n++;
      const batch = this._queue.splice(0, n);
      const opening = this._token === null;
      let resp;
      try {
        resp = await this._fetch(this.url, {
          method: 'POST',
          headers: this._headers(!ping),
          body: batch.length === 1 ? batch[0] : '[' + batch.join(',') + ']',
          credentials: 'include',
          cache: 'no-store',
          signal: this._abort.signal,
        });
        await resp.arrayBuffer().catch(() => {});
      } catch (err) {
        this._lost(`POST: ${err?.message ?? err}`);
        return;
      }
      if (this.readyState !== 1) return;
      if (ping && (resp.status === 204 || resp.status === 429)) {
        // 429: over the frame budget, no pong (as a WebSocket gives none).
        if (resp.status === 204) this.onmessage?.({ data: 'pong' });
        continue;
      }
      if (resp.status === 413) {
        // A frame or a batch over the limits: what a WebSocket closes 1009.
        this._end(1009, 'request too large', false);
        return;
      }
      if (resp.status !== 204 && resp.status !== 200) {
        const ev = opening ? `refused: HTTP ${resp.status}` : `POST: HTTP ${resp.status}`;
        this.status = resp.status;
        this.retryAfter = retryAfterMs(resp.headers.get('Retry-After'));
        this._lost(ev);
        return;
      }
      if (opening) {
        const token = resp.headers.get(POLL_TOKEN);
        if (!token) {
          this._lost('no token in the answer to the connect');
          return;
        }
        this._token = token;
        this._poll();
      }
    }
    this._posting = false;
  }

  async _poll() {
    while (this.readyState === 1) {
      let resp;
      let text = '';
      try {
        resp = await this._fetch(this.url, {
          method: 'GET',
          headers: this._headers(false),
          credentials: 'include',
          cache: 'no-store',
          signal: this._abort.signal,
        });
        text = resp.status === 200 ? await resp.text() : (await resp.arrayBuffer().catch(() => {}), '');
      } catch (err) {
        this._lost(`GET: ${err?.message ?? err}`);
        return;
      }
      if (this.readyState !== 1) return;
      if (resp.status === 204) continue;
      if (resp.status !== 200) {
        // 409 (another GET took this one's place: not ours, we poll from
        // one loop), 410 (gone) or anything else: the connection is lost.
        this._lost(`GET: HTTP ${resp.status}`);
        return;
      }
      let frames;
      try {
        frames = JSON.parse(text);
        if (!Array.isArray(frames)) throw new Error('not an array');
      } catch (err) {
        this._lost(`GET: the answer is not a JSON array: ${err.message}`);
        return;
      }
      for (const f of frames) {
        if (this.readyState !== 1) return;
        this.onmessage?.({ data: JSON.stringify(f) });
      }
      const code = resp.headers.get(POLL_CLOSE_CODE);
      if (code) {
        this._end(Number(code) || 1006, resp.headers.get(POLL_CLOSE_REASON) ?? '', false);
        return;
      }
    }
  }
}
