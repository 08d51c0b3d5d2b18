/**
 * A minimal event emitter (no DOM dependency, so the SDK also runs under
 * node for its unit tests).
 */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * Adds a listener and returns a function that removes it.
   * @param {string} event
   * @param {Function} fn
   * @returns {() => void}
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) {
      set = new Set();
      this._listeners.set(event, set);
    }
    set.add(fn);
    return () => this.off(event, fn);
  }

  /**
   * Adds a listener that runs once.
   * @param {string} event
   * @param {Function} fn
   * @returns {() => void}
   */
  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  /**
   * @param {string} event
   * @param {Function} fn
   */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  /**
   * @param {string} event
   * @returns {number} listeners of event
   */
  listenerCount(event) {
    return this._listeners.get(event)?.size ?? 0;
  }

  /**
   * Calls the listeners of event. A listener that throws does not stop the
   * others: the exception is reported asynchronously.
   * @param {string} event
   * @param {...any} args
   */
  emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
