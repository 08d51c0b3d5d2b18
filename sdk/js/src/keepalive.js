/**
 * The client keepalive of docs/protocol.md §1.4: the text frame `ping`
 * every `interval`, answered by `pong`. Any inbound frame counts as proof of
 * life. When a ping goes unanswered for an interval the link is suspect:
 * pings continue at intervals that double at each attempt, and when nothing
 * has arrived for `period` since the first unanswered ping, `onDead` runs
 * (the Session then reconnects).
 */
export class Keepalive {
  /**
   * @param {{interval?: number, period?: number, clock?: Clock,
   *          sendPing: () => void, onDead: () => void}} opts
   */
  constructor(opts) {
    this.interval = opts.interval ?? 10000;
    this.period = opts.period ?? 30000;
    this.clock = opts.clock ?? defaultClock;
    this.sendPing = opts.sendPing;
    this.onDead = opts.onDead;
    this._timer = null;
    this.running = false;
  }

  start() {
    this.stop();
    this.running = true;
    const now = this.clock.now();
    this.lastActivity = now;
    this.lastPingAt = null;
    this.unansweredSince = null;
    this.attempt = 0;
    this._schedule(this.interval);
  }

  stop() {
    this.running = false;
    if (this._timer !== null) this.clock.clearTimeout(this._timer);
    this._timer = null;
  }

  /** Something arrived from the server (a pong or any frame). */
  activity() {
    this.lastActivity = this.clock.now();
    if (this.unansweredSince !== null) {
      // The link is back: return to the normal rhythm.
      this.unansweredSince = null;
      this.attempt = 0;
      if (this.running) this._schedule(this.interval);
    }
  }

  /** Changes the interval (e.g. shorter while a call is up). */
  setInterval(ms) {
    if (ms === this.interval) return;
    this.interval = ms;
    if (this.running && this.unansweredSince === null) this._schedule(ms);
  }

  _schedule(ms) {
    if (this._timer !== null) this.clock.clearTimeout(this._timer);
    this._timer = this.clock.setTimeout(() => {
      this._timer = null;
      this._tick();
    }, ms);
  }

  _tick() {
    if (!this.running) return;
    const now = this.clock.now();
    if (this.unansweredSince === null && this.lastPingAt !== null && this.lastActivity < this.lastPingAt) {
      this.unansweredSince = this.lastPingAt;
      this.attempt = 0;
    }
    if (this.unansweredSince !== null) {
      const elapsed = now - this.unansweredSince;
      if (elapsed >= this.period) {
        this.stop();
        this.onDead();
        return;
      }
      this.attempt++;
      this.lastPingAt = now;
      this.sendPing();
      const next = Math.min(this.interval * 2 ** this.attempt, this.period - elapsed);
      this._schedule(Math.max(1, next));
      return;
    }
    this.lastPingAt = now;
    this.sendPing();
    this._schedule(this.interval);
  }
}

/** @typedef {{now: () => number, setTimeout: (fn: () => void, ms: number) => any, clearTimeout: (t: any) => void}} Clock */

/** @type {Clock} */
export const defaultClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t),
};
