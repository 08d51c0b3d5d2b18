/**
 * The client end of the JSONrtc reliability machine (docs/protocol.md §3
 * and §4): per-direction sequences, cumulative acks, a bounded retained
 * window of sent frames, duplicate suppression of received frames and the
 * cslr/cslw/csuw/sslr resume exchange. It is the same machine as the
 * gateway's Go package `session`, written for the client side.
 *
 * It knows no socket: the Session stamps frames with it before sending and
 * asks it about every frame it receives. Its state is plain data
 * (`toJSON`/`fromJSON`), kept in sessionStorage across page reloads.
 */

/** @typedef {{seq: number, register: boolean, frame: object, size: number}} Retained */

export const DEFAULT_WINDOW = Object.freeze({ frames: 1024, bytes: 1 << 20 });

/** Thrown by `stamp` when the retained window would overflow (error 503). */
export class WindowFullError extends Error {
  constructor() {
    super('retained window full');
    this.name = 'WindowFullError';
    this.code = 503;
  }
}

/** What to do with a received frame. */
export const Verdict = Object.freeze({
  /** New: process it. */
  DELIVER: 'deliver',
  /** Already processed: drop it without effect (still acknowledge). */
  DUPLICATE: 'duplicate',
  /** An acknowledgement: nothing to deliver. */
  ACK_ONLY: 'ack',
  /** No sequence (not numbered by the server): the caller decides. */
  UNSEQUENCED: 'unsequenced',
});

function isRegister(frame) {
  const pkg = frame.control?.package_type;
  if (pkg) return pkg === 'register';
  return frame.header?.action === 'connect';
}

export class Reliability {
  /**
   * @param {{frames?: number, bytes?: number}} [window]
   */
  constructor(window) {
    this.limits = { ...DEFAULT_WINDOW, ...(window || {}) };
    this.reset(0);
  }

  /**
   * Starts the numbering of the session that replaced one whose resume
   * failed. The reconnect connect stands for our sequence 1 and the
   * gateway acknowledged it, so our next frame is 2 (docs/protocol.md
   * §4.5, as wsc.js does): a 1 would be dropped as a duplicate of it.
   * @param {number} processed
   */
  restartAfterFailedResume(processed) {
    this.reset(processed);
    this.nextSeq = 2;
    this.acked = 1;
  }

  /**
   * Starts the numbering of a new session: our next frame takes sequence 1,
   * and the server's frames up to `processed` count as processed.
   * @param {number} processed
   */
  reset(processed) {
    /** The sequence our next sent frame takes. */
    this.nextSeq = 1;
    /** Highest server sequence processed, in order (our cslr). */
    this.processed = processed;
    /** Highest of our sequences the server acknowledged. */
    this.acked = 0;
    /** Highest `processed` we have told the server about. */
    this.ackSent = processed;
    /** @type {number[]} server sequences processed out of band (a resume's connect response). */
    this.ahead = [];
    /** @type {Retained[]} */
    this.retained = [];
    this.retainedBytes = 0;
  }

  /**
   * Stamps a frame with the next sequence and the cumulative ack, and
   * retains it until the server acknowledges it. An `acknowledgement`
   * takes no sequence and is not retained.
   * @param {object} frame a frame whose control object is filled in place
   * @returns {object} frame
   * @throws {WindowFullError}
   */
  stamp(frame) {
    const c = frame.control;
    c.ack_sequence = this.processed || undefined;
    if (c.ack_sequence === undefined) delete c.ack_sequence;
    this.ackSent = this.processed;
    if (c.type === 'acknowledgement') {
      delete c.sequence;
      return frame;
    }
    if (this.retained.length >= this.limits.frames) throw new WindowFullError();
    c.sequence = this.nextSeq;
    const size = JSON.stringify(frame).length;
    if (this.retainedBytes + size > this.limits.bytes) {
      delete c.sequence;
      throw new WindowFullError();
    }
    this.nextSeq++;
    this.retained.push({ seq: c.sequence, register: isRegister(frame), frame, size });
    this.retainedBytes += size;
    return frame;
  }

  /**
   * Applies the acknowledgement a received frame carries and decides
   * whether the frame is new.
   * @param {object} frame
   * @returns {{verdict: string, gap: number}}
   */
  receive(frame) {
    const c = frame.control || {};
    if (c.type === 'acknowledgement') {
      if (typeof c.ack_sequence === 'number' && c.ack_sequence > 0) this.ack(c.ack_sequence);
      return { verdict: Verdict.ACK_ONLY, gap: 0 };
    }
    if (typeof c.ack_sequence === 'number' && c.ack_sequence > 0) this.ack(c.ack_sequence);
    const seq = c.sequence;
    if (typeof seq !== 'number' || seq <= 0) return { verdict: Verdict.UNSEQUENCED, gap: 0 };
    if (seq <= this.processed || this.ahead.includes(seq)) return { verdict: Verdict.DUPLICATE, gap: 0 };
    const gap = seq - this.processed - 1;
    if (gap > 0 && this.ahead.length > 0) {
      // Frames the server resends after a resume fill the hole below the
      // connect response: record this one ahead and wait for the rest.
      this.ahead.push(seq);
      this.ahead.sort((a, b) => a - b);
      this._absorb();
      return { verdict: Verdict.DELIVER, gap: 0 };
    }
    this.processed = seq;
    this._absorb();
    return { verdict: Verdict.DELIVER, gap };
  }

  /**
   * Records a server sequence processed outside `receive`: the connect
   * response of a resume, which is numbered above the frames the server
   * resends after it.
   * @param {number} seq
   */
  receivedOutOfBand(seq) {
    if (typeof seq !== 'number' || seq <= this.processed) return;
    if (seq === this.processed + 1) {
      this.processed = seq;
      this._absorb();
      return;
    }
    if (!this.ahead.includes(seq)) {
      this.ahead.push(seq);
      this.ahead.sort((a, b) => a - b);
    }
  }

  /**
   * Gives up on a hole below the frames recorded ahead (the server will not
   * fill it): everything up to the highest of them counts as processed.
   */
  skipAhead() {
    if (this.ahead.length === 0) return;
    this.processed = Math.max(this.processed, this.ahead[this.ahead.length - 1]);
    this.ahead = [];
  }

  _absorb() {
    while (this.ahead.length > 0 && this.ahead[0] <= this.processed + 1) {
      const a = this.ahead.shift();
      if (a === this.processed + 1) this.processed = a;
    }
  }

  /**
   * Drops retained frames up to n. A stale or bogus ack is ignored.
   * @param {number} n
   * @returns {boolean} whether anything changed
   */
  ack(n) {
    if (n <= this.acked || n >= this.nextSeq) return false;
    this.acked = n;
    let i = 0;
    while (i < this.retained.length && this.retained[i].seq <= n) {
      this.retainedBytes -= this.retained[i].size;
      i++;
    }
    this.retained.splice(0, i);
    return true;
  }

  /** @returns {boolean} whether the server has not been told of everything processed. */
  ackOwed() {
    return this.processed > this.ackSent;
  }

  /**
   * The reconnect headers of docs/protocol.md §4.4.
   * @returns {{cslr: number, cslw: number, csuw: number}}
   */
  resumeHeaders() {
    const cslr = this.processed;
    const kept = this.retained.filter((r) => !r.register);
    if (kept.length === 0) {
      // Nothing retained: cslw = csuw + 1, csuw = our last sequence.
      return { cslr, cslw: this.nextSeq, csuw: this.nextSeq - 1 };
    }
    return { cslr, cslw: kept[0].seq, csuw: kept[kept.length - 1].seq };
  }

  /**
   * Completes a resume the server accepted: it processed our frames up to
   * sslr, so those are dropped, and the frames above it are returned (in
   * order, never register frames) to be sent again.
   * @param {number} sslr
   * @returns {object[]} frames to resend
   * @throws {Error} when sslr lies outside what we sent
   */
  resumed(sslr) {
    if (typeof sslr !== 'number' || !Number.isInteger(sslr) || sslr < 0) {
      throw new Error(`sslr ${JSON.stringify(sslr)} is not a sequence`);
    }
    if (sslr >= this.nextSeq || sslr < this.acked) {
      throw new Error(`sslr ${sslr} is outside our window (${this.acked}..${this.nextSeq - 1})`);
    }
    this.ack(sslr);
    return this.unsent(sslr);
  }

  /**
   * The retained frames above seq, other than register frames.
   * @param {number} seq
   * @returns {object[]}
   */
  unsent(seq) {
    return this.retained.filter((r) => r.seq > seq && !r.register).map((r) => r.frame);
  }

  /**
   * Whether a resume can succeed on the server as far as this side can
   * tell: criterion 3 of docs/protocol.md §4.4 evaluated for a given sslr.
   * @param {number} sslr the server's highest processed client sequence
   * @param {{cslw: number|null, csuw: number|null}} h
   * @returns {boolean}
   */
  static sslrAcceptable(sslr, h) {
    if (h.cslw === null && h.csuw === null) return true;
    return sslr >= h.cslw - 1 && sslr <= h.csuw;
  }

  toJSON() {
    return {
      nextSeq: this.nextSeq,
      processed: this.processed,
      acked: this.acked,
      ackSent: this.ackSent,
      ahead: this.ahead,
      retained: this.retained.map((r) => ({ seq: r.seq, register: r.register, frame: r.frame })),
    };
  }

  /**
   * @param {ReturnType<Reliability['toJSON']>} data
   * @param {{frames?: number, bytes?: number}} [window]
   */
  static fromJSON(data, window) {
    const r = new Reliability(window);
    r.nextSeq = data.nextSeq;
    r.processed = data.processed;
    r.acked = data.acked;
    r.ackSent = data.ackSent;
    r.ahead = [...(data.ahead || [])];
    r.retained = (data.retained || []).map((x) => ({ ...x, size: JSON.stringify(x.frame).length }));
    r.retainedBytes = r.retained.reduce((n, x) => n + x.size, 0);
    return r;
  }
}
