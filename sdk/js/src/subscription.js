import { Emitter } from './emitter.js';
import { extensionHeaders } from './headers.js';
import { parseMessageSummary } from './summary.js';

/**
 * A subscription (one subsession of the `presence` or
 * `message_notification` package): `request`/`start` with the target,
 * `notify` messages, `shutdown` to end. Refreshed before its `expiry`.
 *
 * Events: `state` ({state, previous}), `notify` (PresenceStatus for
 * presence, MessageSummary for message_notification; the raw payload is
 * the second argument), `ended` (Error|undefined), `resubscribed` (made
 * again in a new session after a failed resume, on a new subsession).
 */
export class Subscription extends Emitter {
  /**
   * @param {import('./session.js').Session} session
   * @param {{id: string, package: 'presence'|'message_notification', target: string, headers?: Record<string, string|number|boolean>}} init
   */
  constructor(session, init) {
    super();
    this.session = session;
    this.id = init.id;
    this.package = init.package;
    this.target = init.target;
    /** Extension headers sent on every (re)subscribe (docs/protocol.md §2.4). */
    this.headers = init.headers ?? {};
    /** 'pending' | 'active' | 'ended' */
    this.state = 'pending';
    /** Seconds the subscription lasts, from the gateway's response. */
    this.expiry = null;
    /** The last notification (parsed). */
    this.last = null;
    /** When the last (re)subscribe was sent, on the session's clock. */
    this.refreshedAt = null;
    this._refreshTimer = null;
    /** @type {Promise<void>} resolves when the subscription is active */
    this.ready = new Promise((resolve, reject) => {
      this._ready = { resolve, reject };
    });
    this.ready.catch(() => {});
  }

  async _start() {
    // The gateway counts the expiry from when it processes the start, which
    // is after it is sent: timing refreshes from here errs on the safe side.
    const sentAt = this.session._clock.now();
    const id = this.id;
    try {
      const resp = await this.session._request({
        type: 'request',
        pkg: this.package,
        action: 'start',
        subsession: this.id,
        header: { initiator: this.session.identity, target: this.target, ...this.headers },
      });
      if (this.state === 'ended') return;
      const expiry = resp.header?.expiry;
      this.expiry = typeof expiry === 'number' ? expiry : null;
      this.refreshedAt = sentAt;
      this._scheduleRefresh();
      this.session._save();
      this._setState('active');
      this._ready.resolve();
    } catch (err) {
      // A start of a session whose resume failed: _resubscribe made a new one.
      if (this.id !== id) return;
      this._ready.reject(err);
      this._ended(err);
    }
  }

  /**
   * Subscribes again in a new session (after a failed resume), on a new
   * subsession: the same object, so the application's listeners stay.
   * State goes back to `pending`, then `active` with the first notify.
   * @param {string} id the new subsession id
   */
  _resubscribe(id) {
    this.session._clock.clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    this.id = id;
    this.expiry = null;
    this.refreshedAt = null;
    this._setState('pending');
    this.emit('resubscribed', this);
    this._start();
  }

  /**
   * Milliseconds before the expiry at which a refresh goes out: 15 % of the
   * expiry, at least 5 s, but never before half of it has run.
   * @param {number} expiry seconds
   */
  static refreshLead(expiry) {
    return Math.min(Math.max(expiry * 0.15, 5), expiry / 2) * 1000;
  }

  /**
   * Arms the refresh for `refreshedAt` + expiry - lead. A refresh due while
   * the socket is down is sent anyway: the session retains it and the
   * resume delivers it, in order.
   */
  _scheduleRefresh() {
    const clock = this.session._clock;
    clock.clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (!this.expiry || this.expiry <= 0 || this.state === 'ended') return;
    const at = (this.refreshedAt ?? clock.now()) + this.expiry * 1000 - Subscription.refreshLead(this.expiry);
    this._refreshTimer = clock.setTimeout(() => {
      this._refreshTimer = null;
      if (this.state !== 'active') return;
      try {
        this.session._requireSession();
      } catch {
        return; // the session is over; _endAll ends this subscription
      }
      this._start();
    }, Math.max(0, at - clock.now()));
  }

  /**
   * Ends the subscription (`message`/`shutdown`).
   * @param {{headers?: Record<string, string|number|boolean>}} [opts] extension headers of the shutdown
   */
  end(opts = {}) {
    const headers = extensionHeaders(opts.headers);
    if (this.state === 'ended') return;
    try {
      this.session._send({ type: 'message', pkg: this.package, action: 'shutdown', subsession: this.id, correlation: true, header: headers });
    } catch {
      /* the session is gone */
    }
    this._ended();
  }

  _onFrame(frame) {
    const c = frame.control;
    const h = frame.header || {};
    if (c.type === 'message' && h.action === 'notify') {
      const payload = frame.payload || {};
      if (this.package === 'message_notification') {
        this.last = parseMessageSummary(payload);
      } else {
        this.last = {
          presentity: payload.presentity ?? this.target,
          status: payload.status,
          activity: payload.activity,
          note: payload.note,
        };
      }
      if (this.state === 'pending') {
        this._setState('active');
      }
      this.emit('notify', this.last, payload);
      this.session._save();
      return;
    }
    if (c.type === 'message' && h.action === 'shutdown') {
      this._ended();
      return;
    }
    if (c.type === 'request') this.session._reject(frame, 405, `${h.action} not allowed`);
  }

  _ended(err) {
    if (this.state === 'ended') return;
    this.session._clock.clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    this._setState('ended');
    this.session._removeSubscription(this);
    this.emit('ended', err);
  }

  _setState(state) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.emit('state', { state, previous });
  }

  _snapshot() {
    if (this.state === 'ended') return null;
    return { id: this.id, package: this.package, target: this.target, headers: this.headers, expiry: this.expiry, refreshedAt: this.refreshedAt, last: this.last };
  }

  /**
   * @param {import('./session.js').Session} session
   * @param {ReturnType<Subscription['_snapshot']>} data
   */
  static restore(session, data) {
    const sub = new Subscription(session, data);
    sub.expiry = data.expiry;
    // When the last refresh went out (the clock's time: Date.now() in a
    // browser, so it spans the reload); the refresh stays on that schedule.
    sub.refreshedAt = typeof data.refreshedAt === 'number' ? data.refreshedAt : null;
    sub.last = data.last;
    sub.state = 'active';
    sub._ready.resolve();
    sub._scheduleRefresh();
    return sub;
  }
}
