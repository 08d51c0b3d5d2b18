// What the page keeps in localStorage for each identity, so that it
// outlives the session and the tab: call history, contacts and chat
// threads. Every list is bounded: localStorage is small (about 5 MB per
// origin) and a phone used for months must not fill it.

/** Calls kept in the history, newest first. */
export const HISTORY_MAX = 50;
/** Messages kept per chat thread, and threads kept (the least recent go). */
export const CHAT_MAX = 100;
export const THREADS_MAX = 30;

export class PhoneStore {
  /** @param {string} identity the signed-in user: each keeps their own. */
  constructor(identity) {
    this.prefix = `softphone.${identity}.`;
    // A Map, saved as [peer, messages] pairs: an object would order
    // numeric names (extensions like 1001) first, not by recency.
    const saved = this._load('chat', []);
    this.threads = new Map(Array.isArray(saved) ? saved.filter((e) => Array.isArray(e) && Array.isArray(e[1])) : []);
  }

  _load(name, fallback) {
    try {
      const v = JSON.parse(localStorage.getItem(this.prefix + name) ?? 'null');
      return v && typeof v === 'object' ? v : fallback;
    } catch {
      return fallback;
    }
  }

  _save(name, v) {
    try {
      localStorage.setItem(this.prefix + name, JSON.stringify(v));
    } catch {
      // Quota exceeded or storage disabled: the page works on without it.
    }
  }

  /** @returns {{peer: string, direction: 'in'|'out', outcome: string, code?: number, at: number, duration: number, video?: boolean}[]} */
  history() {
    const h = this._load('history', []);
    return Array.isArray(h) ? h : [];
  }

  addHistory(entry) {
    this._save('history', [entry, ...this.history()].slice(0, HISTORY_MAX));
  }

  /** Missed calls not yet seen. */
  missed() {
    return Number(localStorage.getItem(this.prefix + 'missed')) || 0;
  }

  setMissed(n) {
    this._save('missed', n);
  }

  contacts() {
    const c = this._load('contacts', []);
    return Array.isArray(c) ? c.filter((x) => typeof x === 'string') : [];
  }

  addContact(target) {
    const c = this.contacts();
    if (!c.includes(target)) this._save('contacts', [...c, target]);
  }

  removeContact(target) {
    this._save('contacts', this.contacts().filter((x) => x !== target));
  }

  /** @returns {{dir: 'in'|'out'|'system', body: string, at: number, state?: string}[]} */
  thread(peer) {
    return this.threads.get(peer) ?? [];
  }

  /** Adds a message to peer's thread and returns it (change it, then saveChat()). */
  addChat(peer, msg) {
    const t = [...this.thread(peer), msg].slice(-CHAT_MAX);
    this.threads.delete(peer);
    this.threads.set(peer, t);
    for (const p of [...this.threads.keys()].slice(0, Math.max(0, this.threads.size - THREADS_MAX))) this.threads.delete(p);
    this.saveChat();
    return msg;
  }

  saveChat() {
    this._save('chat', [...this.threads]);
  }

  /**
   * Marks failed the messages a previous page sent and never heard back
   * about (it was reloaded or closed first), each with a note in its
   * thread: left "pending" they would wait forever, and sent again they
   * could reach the peer twice. Returns how many.
   */
  failPending() {
    let n = 0;
    for (const [peer, msgs] of [...this.threads]) {
      for (const m of msgs.filter((x) => x.dir === 'out' && x.state === 'pending')) {
        m.state = 'failed';
        n++;
        this.addChat(peer, { dir: 'system', body: `"${m.body}" may not have reached ${peer}: the page was reloaded before it was confirmed`, at: Date.now() });
      }
    }
    if (n) this.saveChat();
    return n;
  }
}
