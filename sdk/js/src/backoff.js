/**
 * Exponential backoff with jitter for reconnect attempts. The first attempt
 * after a loss is immediate; each later one waits `initial * factor^(n-1)`,
 * capped at `max`, randomised by +-`jitter`.
 */
export class Backoff {
  /**
   * @param {{initial?: number, max?: number, factor?: number, jitter?: number, random?: () => number}} [opts]
   */
  constructor(opts = {}) {
    this.initial = opts.initial ?? 250;
    this.max = opts.max ?? 10000;
    this.factor = opts.factor ?? 2;
    this.jitter = opts.jitter ?? 0.2;
    this.random = opts.random ?? Math.random;
    this.attempt = 0;
  }

  /** @returns {number} milliseconds to wait before the next attempt */
  next() {
    const n = this.attempt++;
    if (n === 0) return 0;
    const base = Math.min(this.max, this.initial * this.factor ** (n - 1));
    const spread = base * this.jitter * (2 * this.random() - 1);
    return Math.max(0, Math.round(base + spread));
  }

  reset() {
    this.attempt = 0;
  }
}

/** The longest wait a refusal's Retry-After can ask for, ms. */
const MAX_RETRY_AFTER = 60000;

/**
 * The wait, in ms, a refusal asked for: an HTTP Retry-After or a connect
 * error's header.retry_after, in whole seconds (docs/protocol.md §4.2);
 * 0 for none or anything else. At most a minute: a mistake must not park
 * a client past its reconnect timeout.
 * @param {unknown} v
 * @returns {number}
 */
export function retryAfterMs(v) {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(n * 1000, MAX_RETRY_AFTER);
}
