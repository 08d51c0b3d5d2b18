// The call history: each call, when it ends, with what became of it
// (answered and for how long, missed, declined, failed, cancelled), kept
// per identity in localStorage (PhoneStore), and the missed-call badge.
import { $, state, button, phoneStore, callOutcome } from './page.js';

/** Incoming calls this page declined (the rest that end unanswered were missed). */
const declined = new WeakSet();

export function decline(call, code) {
  declined.add(call);
  call.decline(code);
}

/** Adds call to the history when it ends, with what became of it. */
export function recordHistory(call) {
  const at = Date.now();
  call.on('ended', ({ code }) => {
    const store = phoneStore();
    const answered = call.establishedAt != null;
    let outcome;
    if (answered) outcome = 'answered';
    else if (call.direction === 'incoming') outcome = declined.has(call) ? 'declined' : 'missed';
    else outcome = code >= 300 && code !== 487 ? 'failed' : 'cancelled';
    store.addHistory({ peer: call.remoteIdentity, direction: call.direction === 'incoming' ? 'in' : 'out', outcome, code, at, duration: call.duration, video: call.video });
    if (outcome === 'missed') store.setMissed(store.missed() + 1);
    if (state.store === store) renderHistory();
  });
}

const durationText = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
const dateFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

/** What a row's Call button does (app.js: place the call). */
let onCallBack = () => {};
export function setCallBack(fn) {
  onCallBack = fn;
}

export function renderHistory() {
  if (!state.session?.identity) return;
  const store = phoneStore();
  const missed = store.missed();
  const badge = $('missed-badge');
  badge.hidden = missed === 0;
  badge.textContent = `${missed} missed`;
  $('history-list').replaceChildren(
    ...store.history().map((h) => {
      const li = document.createElement('li');
      li.dataset.peer = h.peer;
      li.dataset.direction = h.direction;
      li.dataset.outcome = h.outcome;
      li.dataset.duration = String(h.duration);
      const arrow = document.createElement('span');
      arrow.className = 'dir';
      arrow.textContent = h.direction === 'in' ? '↙' : '↗';
      arrow.title = h.direction === 'in' ? 'received' : 'placed';
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = h.peer;
      const what = document.createElement('span');
      what.className = 'what';
      const how = h.outcome === 'answered' ? durationText(h.duration) : h.outcome === 'failed' ? callOutcome(h.code, h.peer) : h.outcome;
      what.textContent = `${h.direction === 'in' ? 'received' : 'placed'} · ${how} · ${dateFmt.format(h.at)}`;
      const info = document.createElement('span');
      info.className = 'info';
      info.append(who, what);
      li.append(arrow, info, button('Call', `Call ${h.peer}`, () => onCallBack(h.peer)));
      return li;
    }),
  );
}

$('history').addEventListener('toggle', () => {
  // Opening the history is seeing the missed calls.
  if (!$('history').open || !state.session?.identity) return;
  phoneStore().setMissed(0);
  renderHistory();
});
