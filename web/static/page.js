// What every module of the demo page shares: the page's state (also
// window.softphone, for the browser tests and the console), element
// lookup, the event log, and small helpers.
import { Tones } from './tones.js';
import { PhoneStore } from './store.js';

export const $ = (id) => document.getElementById(id);

export const state = {
  /** @type {import('./sdk/session.js').Session|null} */ session: null,
  /** The call the call card shows (the others wait on hold in the call list). @type {import('./sdk/call.js').Call|null} */ call: null,
  /** Every call of this page not yet ended, oldest first: call waiting. @type {import('./sdk/call.js').Call[]} */ calls: [],
  /** The call the incoming dialog shows. @type {import('./sdk/call.js').Call|null} */ incoming: null,
  timer: null,
  noticeTimer: null,
  /** Every connection state shown, in order (the tests read it). */
  connHistory: [],
  watched: new Map(),
  /** Ring, call-waiting beep and ringback. */
  tones: new Tones(),
  /** What this identity keeps in localStorage (history, contacts, chats). @type {PhoneStore|null} */
  store: null,
  /** Whether the page published "on the phone" for a call (and restores the user's status after). */
  onPhone: false,
  /** Where the focus was before the incoming dialog took it. */
  returnFocus: null,
  /** The browser notification of the ringing call, while the tab is hidden. */
  notification: null,
  /** The caller a push woke the page for, and when: {from, at} (its call rings next). */
  wokenFor: null,
  /** Whether the ringing call's notification is the service worker's (of the push that woke the page). */
  wakeNotified: false,
  /** An attended transfer being prepared: the call on hold and the consult call. @type {{held: import('./sdk/call.js').Call, consult: import('./sdk/call.js').Call}|null} */
  consult: null,
};
// For the browser tests and the console.
window.softphone = state;

export function logEvent(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const ol = $('events');
  ol.prepend(li);
  while (ol.children.length > 60) ol.lastChild.remove();
}

/** A button with a visible text and a name that says whom it acts on. */
export function button(text, label, onClick, className) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.setAttribute('aria-label', label);
  if (className) b.className = className;
  b.addEventListener('click', onClick);
  return b;
}

/**
 * The signed-in identity's store. Made on first use: a resumed session
 * may hand over calls and messages before connect() returns.
 */
export function phoneStore() {
  if (!state.store) state.store = new PhoneStore(state.session.identity);
  return state.store;
}

/** What the page keeps per call: the DTMF digits sent and received, the last stats reading. */
export const callInfo = new WeakMap();

/** Why a call failed, in words, by its final response (RFC 3261 §21). */
export function callOutcome(code, peer) {
  switch (code) {
    case 404:
    case 604:
      return 'no such user';
    case 480:
      return `${peer} is unreachable`;
    case 486:
    case 600:
      return `${peer} is busy`;
    case 603:
      return `${peer} declined`;
    case 408:
      return 'no answer';
    case 487:
      return 'cancelled';
    case 503:
      return 'service unavailable';
    case 1002:
      return 'call lost: the gateway could not resume the session (it restarted, or the connection came back too late)';
    default:
      return `call failed (${code})`;
  }
}
