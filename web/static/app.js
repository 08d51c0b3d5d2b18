// The demo softphone: plain ES modules on the jsonrtc SDK (served under
// ./sdk/). Query parameters for tests and tinkering: ws (WebSocket path),
// ping and pingPeriod (keepalive, ms), reconnectTimeout (ms the session
// tries to resume before it gives up), log=1 (frames to the console),
// mailbox (the voicemail box to watch; default: the user's own, e.g.
// mailbox=sip:vm-alice@example.com).
import { Session } from './sdk/index.js';
import { getUserMedia } from './media.js';
import { $, state, logEvent, button, phoneStore, callInfo, callOutcome } from './page.js';
import { refreshDevices, startMeters, stopMeter, updateQuality } from './devices.js';
import { decline, recordHistory, renderHistory, setCallBack } from './history.js';

const params = new URLSearchParams(location.search);
const SIGNIN_KEY = 'softphone.signin';
/** This tab's published status and note, so that a reload publishes the same. */
const PRESENCE_KEY = 'softphone.presence';

/**
 * The gateway's settings for this page (/config.json): its Web Push key
 * and whether it runs in open identity mode. The ICE servers are not
 * taken from here: the SDK uses those of the session's connect response
 * (docs/protocol.md §4.10), whose TURN credential it renews before it
 * expires, where a credential fetched with the page would run out on a
 * long session.
 */
const pageConfig = fetch('config.json')
  .then((r) => (r.ok ? r.json() : {}))
  .catch(() => ({}));

function wsUrl() {
  const path = params.get('ws') || '/ws/demo';
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}

/**
 * Shows the banner: what happened (text) and what to do next (hint).
 * kind is error or info; the banner stays until dismissed or replaced.
 */
function showBanner(kind, text, hint) {
  const el = $('banner');
  el.dataset.kind = kind;
  $('banner-text').textContent = text;
  $('banner-hint').textContent = hint ?? '';
  el.hidden = false;
}

function hideBanner() {
  $('banner').hidden = true;
}

$('banner-close').addEventListener('click', hideBanner);

// ---- Sign in / out ----------------------------------------------------------

function selectedMode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function updateModeFields() {
  const mode = selectedMode();
  $('name-field').hidden = mode !== 'name';
  $('token-field').hidden = mode !== 'token';
}

for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener('change', updateModeFields);

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  askNotifications();
  const mode = selectedMode();
  const creds = { mode };
  if (mode === 'name') {
    creds.name = $('name').value.trim();
    if (!creds.name) {
      $('signin-error').textContent = 'Enter a name, or sign in as a guest.';
      return;
    }
  }
  if (mode === 'token') {
    creds.token = $('token').value.trim();
    if (!creds.token) {
      $('signin-error').textContent = 'Paste an access token.';
      return;
    }
  }
  signIn(creds);
});

async function signIn(creds) {
  $('signin-error').textContent = '';
  hideBanner();
  $('signin-btn').disabled = true;
  sessionStorage.setItem(SIGNIN_KEY, JSON.stringify(creds));
  restorePresenceChoice();
  const ping = Number(params.get('ping')) || undefined;
  const conf = await pageConfig;
  const session = new Session({
    url: wsUrl(),
    identity: creds.mode === 'name' ? creds.name : undefined,
    token: creds.mode === 'token' ? creds.token : undefined,
    keepalive: { interval: ping, busyInterval: ping, period: Number(params.get('pingPeriod')) || undefined },
    reconnect: { timeout: Number(params.get('reconnectTimeout')) || undefined },
    rtc: {
      getUserMedia,
      // ?relay=1: media through the TURN relays only (a test of them).
      iceTransportPolicy: params.get('relay') ? 'relay' : 'all',
    },
    logger: params.get('log') ? { debug: console.debug, info: console.info, warn: console.warn, error: console.error } : undefined,
    // Standby while the page is hidden with no call, woken by a push
    // (docs/protocol.md §4.9), when the gateway has Web Push.
    standby: conf.vapidPublicKey && params.get('standby') !== 'off' ? { auto: true, push: () => pushChannel(conf.vapidPublicKey) } : undefined,
  });
  state.session = session;
  state.store = null;
  session.on('state', ({ state: s, error }) => {
    setConnState(s);
    logEvent(`session ${s}${error ? `: ${error.message}` : ''}`);
    if (s === 'failed' || s === 'closed') signedOut(error);
  });
  session.on('incomingcall', onIncomingCall);
  session.on('callrestored', (call) => {
    logEvent(`call with ${call.remoteIdentity} restored`);
    recordHistory(call);
    showCall(call);
  });
  session.on('subscriptionrestored', onSubscriptionRestored);
  session.on('message', onChatMessage);
  session.on('resumefailed', ({ endedCalls, resubscribed }) => {
    logEvent(`the session could not be resumed: new session; ${endedCalls.length} call(s) lost, ${resubscribed.length} subscription(s) made again`);
    for (const { call, reason } of endedCalls) logEvent(`call with ${call.remoteIdentity} ended: ${reason}`);
    // The SDK subscribed again to what it held; watch what it did not.
    startServices(session);
  });
  session.on('error', (err) => logEvent(`error: ${err.message}`));
  try {
    await session.connect();
  } catch (err) {
    $('signin-error').textContent = `Cannot sign in: ${err.message}`;
    showBanner('error', `Cannot sign in: ${err.message}`, signInHint(err, creds));
    $('signin-btn').disabled = false;
    sessionStorage.removeItem(SIGNIN_KEY);
    return;
  }
  $('signin-btn').disabled = false;
  if (creds.mode === 'token' && conf.openMode) {
    // An open-mode gateway reads no token: it made this a guest session.
    showBanner(
      'info',
      `This gateway runs in open mode: it ignored the token and signed you in as ${session.identity}.`,
      'Sign in with a name to choose your identity; tokens only count on a gateway with auth.applications.',
    );
  }
  $('me').textContent = session.identity;
  $('signin').hidden = true;
  $('phone').hidden = false;
  startServices(session);
}

// ---- Standby and push ---------------------------------------------------------

/**
 * The page's Web Push subscription, made with the gateway's VAPID key
 * (state.pushChannel, when set, stands in: the browser tests give one of
 * a push service of their own). Null where the browser has no push.
 */
async function pushChannel(vapidPublicKey) {
  if (state.pushChannel) return state.pushChannel;
  const reg = await state.serviceWorker;
  if (!reg?.pushManager) return null;
  const key = Uint8Array.from(atob(vapidPublicKey.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const sub = (await reg.pushManager.getSubscription()) ?? (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }));
  return sub.toJSON();
}

// The service worker shows the push and tells the page to resume.
state.serviceWorker = navigator.serviceWorker?.register('sw.js').catch((err) => {
  logEvent(`no service worker: ${err.message}`);
  return null;
});
navigator.serviceWorker?.addEventListener('message', (ev) => {
  if (ev.data?.type !== 'wake' || !state.session) return;
  state.lastPush = ev.data;
  // The worker showed this call's notification (or failed to): the page
  // shows none of its own for it (notifyIncoming).
  state.wokenFor = ev.data.kind === 'call' && !ev.data.notificationError ? { from: ev.data.from, at: Date.now() } : null;
  if (ev.data.notificationError) logEvent(`notification not shown: ${ev.data.notificationError}`);
  logEvent(`woken by a push${ev.data.kind ? `: ${ev.data.kind} from ${ev.data.from}` : ''}`);
  state.session.wake();
});
navigator.serviceWorker?.startMessages();

function signedOut(error) {
  sessionStorage.removeItem(SIGNIN_KEY);
  sessionStorage.removeItem(PRESENCE_KEY);
  $('my-status').value = 'available';
  $('my-note').value = '';
  hideIncoming();
  hideCall();
  state.calls = [];
  renderCallList();
  updateTone();
  $('phone').hidden = true;
  $('signin').hidden = false;
  $('presence-list').replaceChildren();
  state.watched.clear();
  $('chat-log').replaceChildren();
  $('chat-to').value = '';
  $('history-list').replaceChildren();
  state.onPhone = false;
  if (error) {
    $('signin-error').textContent = `Signed out: ${error.message}`;
    showBanner('error', `Signed out: ${error.message}`, 'Check your network connection, then sign in again.');
  }
}

/** What to do after a failed sign-in. */
function signInHint(err, creds) {
  if (err.code === 401 || err.code === 403) {
    return creds.mode === 'token' ? 'The token was refused: get a new one and try again.' : 'This gateway wants a token: choose Token and paste one.';
  }
  if (err.code === 400) return 'The gateway refused this name: use letters, digits and ., -, _ or @, without spaces.';
  return 'Check that the gateway is running and reachable, then try again.';
}

$('signout-btn').addEventListener('click', () => {
  state.session?.close();
});

function setConnState(s) {
  state.connHistory.push(s);
  const el = $('conn-state');
  el.dataset.state = s;
  const text = {
    idle: 'signed out',
    connecting: 'connecting…',
    connected: 'connected',
    reconnecting: 'reconnecting…',
    resumed: 'resumed',
    standby: 'standby (a push wakes it)',
    failed: 'disconnected',
    closed: 'signed out',
  }[s];
  $('conn-text').textContent = text ?? s;
}

function startServices(session) {
  // Voicemail indicator: the mailbox of the query, else this user's own
  // (after a reload, the SDK hands back the restored subscription).
  const mailbox = params.get('mailbox')?.trim() || session.identity;
  showVoicemail('unknown', '–', 'Voicemail: waiting for the gateway');
  wireVoicemail(session.subscribeMessageSummary(mailbox));
  publishStatus();
  refreshDevices();
  // Re-attach the contacts kept across a reload, then watch the saved ones
  // (after a new sign-in or a failed resume they have no subscription).
  for (const sub of session.subscriptions.values()) if (sub.package === 'presence' && sub.state !== 'ended') bindContact(sub);
  for (const target of phoneStore().contacts()) bindContact(session.watchPresence(target));
  // No page of this one is sending yet: what is still pending was a
  // previous page's, whose answer went with it.
  const lost = phoneStore().failPending();
  if (lost) logEvent(`${lost} message${lost > 1 ? 's' : ''} sent before the reload not confirmed`);
  renderThread();
  renderHistory();
}

/**
 * The voicemail indicator: waiting is yes, no, none (no service) or
 * unknown. With the mailbox's account (the summary's Message-Account,
 * RFC 3842) a click calls it; without one the button is disabled, as
 * there is nothing to call.
 */
function showVoicemail(waiting, text, title, account) {
  const vm = $('vm');
  vm.dataset.waiting = waiting;
  $('vm-text').textContent = text;
  vm.dataset.account = account ?? '';
  vm.disabled = !account;
  const full = account ? `${title}. Call ${account} to listen` : title;
  vm.title = full;
  vm.setAttribute('aria-label', full);
}

$('vm').addEventListener('click', () => {
  const account = $('vm').dataset.account;
  if (account) placeCall(account);
});

function wireVoicemail(sub) {
  if (sub._wired) return;
  sub._wired = true;
  const show = (s) => {
    // Urgent counts, summed over the message classes (RFC 3842 "new/old
    // (urgent new/urgent old)").
    let urgentNew = 0;
    let urgentOld = 0;
    for (const c of Object.values(s.classes ?? {})) {
      urgentNew += c.urgentNew ?? 0;
      urgentOld += c.urgentOld ?? 0;
    }
    const urgent = (n) => (n ? ` (${n} urgent)` : '');
    const news = s.waiting ? `${s.newMessages} new${urgent(urgentNew)}` : 'no new messages';
    const title = `Voicemail: ${news}, ${s.oldMessages} old${urgent(urgentOld)}`;
    showVoicemail(s.waiting ? 'yes' : 'no', s.waiting ? `${s.newMessages} new` : '0', title, s.account);
  };
  if (sub.last) show(sub.last);
  sub.on('notify', show);
  sub.ready.then(
    () => {
      if (!sub.last) showVoicemail('unknown', '–', 'Voicemail: no summary yet');
    },
    (err) => {
      if (state.session !== sub.session) return;
      // The gateway answers 404 when it has no voicemail service (no SIP side).
      if (err.code === 404) showVoicemail('none', 'No voicemail', `No voicemail service (${err.code} ${err.reason ?? ''})`.trim());
      else showVoicemail('unknown', '–', `Voicemail unavailable (${err.code ?? ''} ${err.reason ?? err.message})`);
      logEvent(`voicemail: ${err.code ?? ''} ${err.reason ?? err.message}`);
    },
  );
  sub.on('ended', (err) => {
    if (state.session !== sub.session || !sub.expiry) return; // never accepted: handled above
    showVoicemail('unknown', '–', `Voicemail subscription ended${err ? ` (${err.code ?? ''} ${err.reason ?? err.message})` : ''}`);
  });
}

function onSubscriptionRestored(sub) {
  if (sub.package === 'message_notification') wireVoicemail(sub);
}

// ---- Presence ---------------------------------------------------------------

const statusMap = {
  available: { status: 'open', activity: 'available' },
  busy: { status: 'open', activity: 'busy' },
  away: { status: 'open', activity: 'away' },
  offline: { status: 'closed', activity: 'offline' },
};

function restorePresenceChoice() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(PRESENCE_KEY) || 'null');
    if (saved && statusMap[saved.status]) {
      $('my-status').value = saved.status;
      $('my-note').value = saved.note ?? '';
    }
  } catch {
    sessionStorage.removeItem(PRESENCE_KEY);
  }
}

/** Publishes the status and note in the controls (the gateway tells every watcher). */
async function publishStatus() {
  const session = state.session;
  if (!session?.id) return;
  const status = $('my-status').value;
  const note = $('my-note').value.trim();
  sessionStorage.setItem(PRESENCE_KEY, JSON.stringify({ status, note }));
  const form = $('note-form');
  form.dataset.published = 'pending';
  // During a call the activity stays "on the phone"; the new choice counts after it.
  const activity = state.onPhone && status !== 'offline' ? { status: 'open', activity: 'on-the-phone' } : statusMap[status];
  try {
    await session.publishPresence({ ...activity, note: note || undefined });
    if (state.session !== session) return;
    form.dataset.published = JSON.stringify({ status, note });
    logEvent(`published ${status}${note ? ` (${note})` : ''}`);
  } catch (err) {
    form.dataset.published = 'failed';
    logEvent(`publish failed: ${err.message}`);
  }
}

$('my-status').addEventListener('change', publishStatus);
$('note-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  publishStatus();
});

$('watch-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const target = $('watch-to').value.trim();
  if (!target || !state.session) return;
  $('watch-to').value = '';
  bindContact(state.session.watchPresence(target));
});

/** The contact row of target, made (and saved) on first use. */
function contactRow(target) {
  let li = state.watched.get(target);
  if (li) return li;
  phoneStore().addContact(target);
  li = document.createElement('li');
  li.dataset.target = target;
  li.dataset.status = 'unknown';
  const dot = document.createElement('span');
  dot.className = 'status';
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = target;
  const what = document.createElement('span');
  what.className = 'what';
  what.textContent = 'pending';
  const info = document.createElement('span');
  info.className = 'info';
  info.append(who, what);
  const stop = button('✕', `Stop watching ${target}`, () => {
    li.sub?.end();
    li.remove();
    state.watched.delete(target);
    phoneStore().removeContact(target);
  });
  stop.title = 'Stop watching';
  li.append(
    dot,
    info,
    button('Call', `Call ${target}`, () => placeCall(target)),
    button('Chat', `Chat with ${target}`, () => openThread(target), 'chat'),
    stop,
  );
  $('presence-list').append(li);
  state.watched.set(target, li);
  return li;
}

/** Shows sub's notifications on its contact's row. */
function bindContact(sub) {
  const li = contactRow(sub.target);
  if (li.sub === sub) return;
  li.sub = sub;
  const what = li.querySelector('.what');
  const show = (p) => {
    const busy = p.activity === 'busy' || p.activity === 'on-the-phone';
    li.dataset.status = p.status !== 'open' ? 'closed' : busy ? 'busy' : p.activity === 'away' ? 'away' : 'open';
    what.textContent = [p.status === 'open' ? p.activity || 'online' : 'offline', p.note].filter(Boolean).join(' · ');
    what.title = what.textContent;
  };
  if (sub.last) show(sub.last);
  sub.on('notify', (p) => {
    if (li.sub === sub) show(p);
  });
  sub.ready.then(
    () => {
      if (li.sub === sub && !sub.last) what.textContent = 'watching';
    },
    () => {},
  );
  sub.on('ended', (err) => {
    // Ended by the gateway or by an error: keep the contact, say so.
    if (!li.isConnected || li.sub !== sub) return;
    li.dataset.status = 'error';
    what.textContent = err ? `unavailable (${err.code ?? ''})` : 'ended';
  });
}

// ---- Chat -------------------------------------------------------------------

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/** A line of the chat log for a stored message (see PhoneStore.addChat). */
function chatLine(msg, from) {
  const li = document.createElement('li');
  li.className = msg.dir + (msg.state === 'pending' ? ' pending' : '');
  if (msg.state === 'delivered') li.dataset.delivered = 'true';
  if (msg.state === 'failed') li.dataset.failed = 'true';
  if (from && msg.dir === 'in') {
    const f = document.createElement('span');
    f.className = 'from';
    f.textContent = from;
    li.append(f);
  }
  li.append(document.createTextNode(msg.body));
  if (msg.dir !== 'system') {
    const t = document.createElement('time');
    t.dateTime = new Date(msg.at).toISOString();
    t.textContent = timeFmt.format(msg.at);
    li.append(t);
  }
  return li;
}

function appendChat(msg, from) {
  const li = chatLine(msg, from);
  $('chat-log').append(li);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
  return li;
}

/** Shows the thread with the peer in the To field. */
function renderThread() {
  const peer = $('chat-to').value.trim();
  $('chat-log').dataset.peer = peer;
  $('chat-log').replaceChildren(...(peer && state.session?.identity ? phoneStore().thread(peer).map((m) => chatLine(m, peer)) : []));
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
  const li = state.watched.get(peer);
  if (li) setUnread(li, 0);
}

function openThread(peer) {
  $('chat-to').value = peer;
  renderThread();
  $('chat-input').focus();
}

/** A contact's count of messages not yet seen, on its Chat button. */
function setUnread(li, n) {
  li.dataset.unread = String(n);
  const chat = li.querySelector('button.chat');
  chat.textContent = n ? `Chat (${n})` : 'Chat';
  chat.setAttribute('aria-label', `Chat with ${li.dataset.target}${n ? `, ${n} new` : ''}`);
}

$('chat-to').addEventListener('input', renderThread);

function onChatMessage(msg) {
  const entry = phoneStore().addChat(msg.from, { dir: 'in', body: msg.body, at: Date.now() });
  if (!$('chat-to').value) {
    $('chat-to').value = msg.from;
    renderThread();
  } else if ($('chat-log').dataset.peer === msg.from) {
    appendChat(entry, msg.from);
  } else {
    const li = state.watched.get(msg.from);
    if (li) setUnread(li, Number(li.dataset.unread || 0) + 1);
  }
  logEvent(`message from ${msg.from}`);
}

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const to = $('chat-to').value.trim();
  const body = $('chat-input').value;
  if (!to || !body || !state.session) return;
  $('chat-input').value = '';
  if ($('chat-log').dataset.peer !== to) renderThread();
  const store = phoneStore();
  const entry = store.addChat(to, { dir: 'out', body, at: Date.now(), state: 'pending' });
  const li = appendChat(entry);
  let failure = null;
  try {
    await state.session.sendMessage(to, body);
    entry.state = 'delivered';
  } catch (err) {
    entry.state = 'failed';
    failure = store.addChat(to, { dir: 'system', body: `not delivered to ${to}: ${err.reason ?? err.message}`, at: Date.now() });
  }
  store.saveChat();
  if (!li.isConnected) return;
  li.classList.remove('pending');
  if (entry.state === 'delivered') li.dataset.delivered = 'true';
  else li.dataset.failed = 'true';
  if (failure) appendChat(failure);
});

// ---- On the phone -----------------------------------------------------------

/**
 * Publishes "on the phone" while a call is up, and the user's own status
 * once the last call ends (an offline user stays offline throughout).
 */
function updateOnPhone() {
  const busy = state.calls.some((c) => c.state === 'established');
  if (busy === state.onPhone || !state.session?.id) return;
  state.onPhone = busy;
  publishStatus();
}

// ---- Dialing ----------------------------------------------------------------

for (const b of $('dialpad').querySelectorAll('button')) {
  b.addEventListener('click', () => {
    $('address').value += b.dataset.key;
  });
}

$('dial-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const target = $('address').value.trim();
  if (target) placeCall(target);
});

/** Calls target (opts: more CallOptions); returns the call, or null. */
function placeCall(target, opts = {}) {
  if (!state.session?.connected) return null;
  if (state.call && !state.call.held) {
    logEvent('already in a call: hold it first');
    return null;
  }
  const call = state.session.call(target, { video: $('video').checked, ...opts });
  recordHistory(call);
  logEvent(`calling ${target}`);
  showCall(call);
  return call;
}

// ---- Incoming ---------------------------------------------------------------

/**
 * Calls this page takes at once: one shown, the others on hold. Beyond
 * that a new call is busy (486): the page's choice, not the SDK's.
 */
const MAX_CALLS = 4;

function onIncomingCall(call) {
  recordHistory(call);
  if (call.replacedCall) {
    // An attended transfer: this call takes over one we are in, and the
    // SDK answers it and ends that one. No ringing, no dialog.
    logEvent(`${call.remoteIdentity} takes over the call with ${call.replacedCall.remoteIdentity}`);
    showCall(call);
    return;
  }
  if ((state.incoming && state.incoming !== call) || state.calls.length >= MAX_CALLS) {
    call.decline(486);
    return;
  }
  state.incoming = call;
  // Call waiting: another call is up, so accepting holds it first.
  const waiting = state.calls.length > 0;
  const kind = call.video ? 'video call' : 'call';
  $('incoming-title').textContent = waiting ? `Call waiting: ${kind}` : `Incoming ${kind}`;
  $('incoming').dataset.video = String(call.video);
  $('incoming').dataset.waiting = String(waiting);
  $('accept-btn').textContent = waiting ? 'Hold & accept' : 'Accept';
  $('incoming-from').textContent = call.remoteIdentity;
  // The dialog takes the focus (and gives it back when it closes): a
  // keyboard or screen-reader user lands on it, Tab stays inside, Escape declines.
  if (!state.returnFocus) state.returnFocus = document.activeElement;
  $('incoming').hidden = false;
  $('incoming-box').focus();
  updateTone();
  notifyIncoming(call);
  logEvent(`incoming ${call.video ? 'video ' : ''}call from ${call.remoteIdentity} (${call.kinds.join(', ')})`);
  call.on('ended', () => {
    if (state.incoming === call) hideIncoming();
  });
}

function hideIncoming() {
  state.incoming = null;
  const hadFocus = $('incoming').contains(document.activeElement) || document.activeElement === document.body;
  $('incoming').hidden = true;
  const back = state.returnFocus;
  state.returnFocus = null;
  if (hadFocus) {
    // Back where the user was; when that is gone (the dialer hides during a call), to the call card.
    if (back?.isConnected && back !== document.body && back.checkVisibility?.() !== false) back.focus();
    else if (!$('incall').hidden) $('hangup-btn').focus();
  }
  state.notification?.close();
  state.notification = null;
  closeWakeNotification();
  document.title = PAGE_TITLE;
  updateTone();
}

// ---- Tones and notifications ------------------------------------------------

const PAGE_TITLE = document.title;

/**
 * The tone the page should play now: the incoming call's ring (a soft beep
 * when it waits behind another call), else the ringback of an outgoing
 * call the far end is alerting, else none.
 */
function updateTone() {
  let kind = '';
  if (state.incoming) kind = state.calls.length > 0 ? 'waiting' : 'ring';
  else if (state.calls.some((c) => c.direction === 'outgoing' && c.state === 'alerting')) kind = 'ringback';
  state.tones.play(kind);
  document.documentElement.dataset.tone = kind;
}

// Browsers let an AudioContext play only after a user gesture: any click
// or key unlocks it, so a later call can ring.
for (const ev of ['pointerdown', 'keydown']) document.addEventListener(ev, () => state.tones.unlock(), { passive: true });

/**
 * Asks for notification permission, from the sign-in click: browsers
 * ignore (or hold against the site) a request without a user gesture.
 */
function askNotifications() {
  if ('Notification' in window && Notification.permission === 'default') {
    Notification.requestPermission().catch(() => {});
  }
}

/**
 * While the tab is hidden, a ringing call changes the title and shows a
 * notification, unless the push that woke the page for this call already
 * shows the service worker's: one notification per call. The page then
 * closes the worker's when the call stops ringing (closeWakeNotification).
 */
function notifyIncoming(call) {
  const woken = state.wokenFor;
  state.wokenFor = null;
  // The push says who calls, not which call: a call from that caller
  // soon after the push is the one it announced.
  state.wakeNotified = !!woken && woken.from === call.remoteIdentity && Date.now() - woken.at < 60000;
  if (!document.hidden) return;
  document.title = `☎ ${call.remoteIdentity} is calling`;
  if (state.wakeNotified) return;
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(call.video ? 'Incoming video call' : 'Incoming call', {
      body: `${call.remoteIdentity} is calling`,
      tag: `call-${call.id}`,
      requireInteraction: true,
    });
    n.onclick = () => {
      window.focus();
      n.close();
    };
    state.notification = n;
  } catch (err) {
    // Some browsers (Android Chrome) allow notifications only from a service worker.
    logEvent(`notification failed: ${err.message}`);
  }
}

/** Closes the service worker's notification of the push that woke the page for the ringing call. */
function closeWakeNotification() {
  if (!state.wakeNotified) return;
  state.wakeNotified = false;
  Promise.resolve(state.serviceWorker)
    .then((reg) => reg?.getNotifications({ tag: 'jsonrtc-wake' }))
    .then((ns) => {
      for (const n of ns ?? []) if (n.data?.kind === 'call') n.close();
    })
    .catch(() => {});
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) document.title = PAGE_TITLE;
});

$('accept-btn').addEventListener('click', async () => {
  const call = state.incoming;
  if (!call) return;
  hideIncoming();
  // Call waiting: every other call goes on hold before this one is answered.
  for (const other of state.calls) {
    if (other.state === 'established' && !other.held) {
      await other.hold().catch((err) => logEvent(`hold failed: ${err.message}`));
    } else if (other.direction === 'outgoing' && other.state !== 'established') {
      other.end();
    }
  }
  if (call.ended) return;
  showCall(call);
  // The dialer the focus may have come from is hidden now: the call card takes it.
  if (document.activeElement === document.body || !document.activeElement?.checkVisibility()) $('hangup-btn').focus();
  // A video offer is answered with the camera too, so video goes both ways.
  call.accept({ video: call.video }).catch((err) => logEvent(`accept failed: ${err.message}`));
});

$('incoming').addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') {
    ev.preventDefault();
    $('decline-btn').click();
  } else if (ev.key === 'Tab') {
    // A modal dialog keeps the focus on its own buttons.
    const order = [$('decline-btn'), $('accept-btn')];
    const i = order.indexOf(document.activeElement);
    ev.preventDefault();
    const next = i < 0 ? (ev.shiftKey ? order.length - 1 : 0) : (i + (ev.shiftKey ? -1 : 1) + order.length) % order.length;
    order[next].focus();
  }
});

$('decline-btn').addEventListener('click', () => {
  const call = state.incoming;
  hideIncoming();
  if (call) decline(call);
});

// ---- In call ----------------------------------------------------------------

const stateText = {
  new: 'starting…',
  calling: 'calling…',
  alerting: 'ringing…',
  ringing: 'incoming',
  connecting: 'connecting…',
  established: 'in call',
  ended: 'call ended',
  failed: 'call failed',
};

/** Shows call on the call card; a call not seen before joins the call list. */
function showCall(call) {
  if (!state.calls.includes(call)) {
    // The figures of the last call that ended give way to the new one.
    $('call-figures').hidden = true;
    state.calls.push(call);
    callInfo.set(call, { dtmfSent: '', dtmfReceived: '' });
    wireCall(call);
  }
  focusCall(call);
  // A call restored after a reload is up already: say "on the phone" again.
  updateOnPhone();
}

function wireCall(call) {
  const current = () => state.call === call;
  call.on('state', ({ state: s, code, reason }) => {
    logEvent(`call ${s}${code ? ` ${code}` : ''}${reason ? ` (${reason})` : ''}`);
    if (current()) renderCall();
    renderCallList();
    updateTone();
    updateOnPhone();
  });
  for (const ev of ['hold', 'mute']) {
    call.on(ev, () => {
      if (current()) renderCall();
      renderCallList();
    });
  }
  call.on('remotestream', () => {
    if (current()) attachMedia(call);
  });
  call.on('localstream', () => {
    if (current()) attachMedia(call);
    // The devices' names are readable once the page may use them.
    refreshDevices();
  });
  call.on('dtmf', ({ digits }) => {
    callInfo.get(call).dtmfReceived += digits;
    if (current()) showDigits(call);
    logEvent(`DTMF received: ${digits}`);
  });
  call.on('transfer', (req) => {
    logEvent(`transferred to ${req.referTo}${req.replaces ? ' (attended)' : ''}`);
    req.accept();
    call.end();
    // Attended: the new call carries the token that lets it replace the
    // transferor's call with the target.
    setTimeout(() => placeCall(req.referTo, req.replaces ? { replaces: req.replaces } : {}), 0);
  });
  call.on('media', ({ media }) => showFigures(call, media));
  call.on('ice', (s) => logEvent(`ICE ${s}`));
  call.on('error', (err) => logEvent(`call error: ${err.message}`));
  call.on('ended', ({ state: s, code, reason }) => {
    state.calls = state.calls.filter((c) => c !== call);
    if (current()) {
      const el = $('call-status');
      el.textContent = `${stateText[s]}${code ? ` (${code}${reason ? ' ' + reason : ''})` : ''}`;
      el.dataset.state = s;
      // A waiting call takes the card, still on hold: resuming it is the user's choice.
      const next = state.calls[state.calls.length - 1];
      if (next) focusCall(next);
      else hideCall();
    }
    renderCallList();
    updateTone();
    updateOnPhone();
    const outcome = code >= 300 ? callOutcome(code, call.remoteIdentity) : null;
    if (outcome) showCallNotice(outcome, code);
  });
}

/** Puts call on the call card, with its media and digits. */
function focusCall(call) {
  state.call = call;
  clearTimeout(state.noticeTimer);
  $('call-notice').hidden = true;
  showDigits(call);
  // The figures are the card's call's: none until its own first reading.
  $('call-quality').textContent = 'Quality: measuring…';
  for (const k of ['rtt', 'jitter', 'loss', 'recv', 'send']) $('call-quality').dataset[k] = '';
  $('call-peer').textContent = call.remoteIdentity;
  $('incall').hidden = false;
  $('dialer').hidden = true;
  attachMedia(call);
  renderCall();
  renderCallList();
}

function attachMedia(call) {
  const stream = call.remoteStream;
  if ($('remote-audio').srcObject !== stream) {
    $('remote-audio').srcObject = stream;
    $('remote-video').srcObject = stream;
  }
  $('local-video').srcObject = call.localStream;
  $('videos').hidden = !stream || stream.getVideoTracks().length === 0;
  startMeters(call);
}

/** The DTMF digits of the call on the card; the line shows once there are some. */
function showDigits(call) {
  const info = callInfo.get(call);
  $('dtmf-sent').textContent = info.dtmfSent || '–';
  $('dtmf-received').textContent = info.dtmfReceived || '–';
  $('dtmf-line').hidden = !info.dtmfSent && !info.dtmfReceived;
}

/** The calls not on the card (on hold, or still connecting), each with Switch and End. */
function renderCallList() {
  const list = $('call-list');
  const others = state.calls.filter((c) => c !== state.call);
  list.hidden = others.length === 0;
  list.replaceChildren(
    ...others.map((call) => {
      const li = document.createElement('li');
      li.dataset.peer = call.remoteIdentity;
      li.dataset.state = call.state;
      li.dataset.held = String(call.held);
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = call.remoteIdentity;
      const what = document.createElement('span');
      what.className = 'what';
      what.textContent = call.state === 'established' && call.held ? 'on hold' : (stateText[call.state] ?? call.state);
      const info = document.createElement('span');
      info.className = 'info';
      info.append(who, what);
      const sw = document.createElement('button');
      sw.type = 'button';
      sw.className = 'switch';
      sw.textContent = 'Switch';
      sw.setAttribute('aria-label', `Switch to the call with ${call.remoteIdentity}`);
      sw.disabled = call.state !== 'established';
      sw.addEventListener('click', () => switchTo(call));
      const end = document.createElement('button');
      end.type = 'button';
      end.className = 'danger end';
      end.textContent = 'End';
      end.setAttribute('aria-label', `End the call with ${call.remoteIdentity}`);
      end.addEventListener('click', () => call.end());
      li.append(info, sw, end);
      return li;
    }),
  );
}

/** Holds the call on the card and resumes call in its place. */
async function switchTo(call) {
  const cur = state.call;
  try {
    if (cur && cur !== call && cur.state === 'established' && !cur.held) await cur.hold();
    if (call.ended) return;
    focusCall(call);
    if (call.held) await call.resume();
  } catch (err) {
    logEvent(`switch failed: ${err.message}`);
  } finally {
    if (state.call) renderCall();
    renderCallList();
  }
}

/** How long a failed call's reason stays on screen. */
const CALL_NOTICE_MS = 6000;

function showCallNotice(text, code) {
  const el = $('call-notice');
  el.textContent = text;
  el.dataset.code = String(code);
  el.hidden = false;
  clearTimeout(state.noticeTimer);
  state.noticeTimer = setTimeout(() => {
    el.hidden = true;
  }, CALL_NOTICE_MS);
}

/**
 * What rtpengine counted on each leg of the call that ended
 * (docs/protocol.md §5.8), where the call card was: the packets each side
 * sent, and the quality its receiver reported. It stays until a new call.
 */
function showFigures(call, media) {
  const el = $('call-figures');
  const leg = (m) => {
    let s = `${m.side === 'web' ? 'you' : 'they'} sent ${m.packets} packets`;
    if (m.errors) s += ` (${m.errors} not relayed)`;
    const q = m.quality;
    if (q) s += `, MOS ${q.mos}, jitter ${q.jitter_ms} ms, loss ${q.loss_percent} %`;
    return s;
  };
  el.textContent = `Media of the call with ${call.remoteIdentity}: ${media.map(leg).join('; ')}`;
  for (const m of media) el.dataset[`${m.side}Packets`] = String(m.packets);
  el.hidden = false;
  logEvent(`call media: ${el.textContent}`);
}

function hideCall() {
  clearInterval(state.timer);
  state.timer = null;
  state.call = null;
  $('incall').hidden = true;
  $('dialer').hidden = false;
  $('dtmf-pad').hidden = true;
  $('dtmf-btn').setAttribute('aria-pressed', 'false');
  stopMeter('mic');
  stopMeter('remote');
  $('remote-audio').srcObject = null;
  $('remote-video').srcObject = null;
  $('local-video').srcObject = null;
  $('videos').hidden = true;
}

function renderCall() {
  const call = state.call;
  if (!call) return;
  let text = stateText[call.state] ?? call.state;
  if (call.state === 'established' && call.held) text = 'on hold';
  else if (call.state === 'established' && call.remoteHeld) text = 'held by the other party';
  const el = $('call-status');
  el.textContent = text;
  el.dataset.state = call.state;
  el.dataset.held = String(call.held);
  el.dataset.remoteHeld = String(call.remoteHeld);
  const up = call.state === 'established';
  $('hold-btn').disabled = !up;
  $('hold-btn').textContent = call.held ? 'Resume' : 'Hold';
  $('hold-btn').setAttribute('aria-pressed', String(call.held));
  $('mute-btn').textContent = call.muted ? 'Unmute' : 'Mute';
  $('mute-btn').setAttribute('aria-pressed', String(call.muted));
  $('dtmf-btn').disabled = !up;
  $('transfer-btn').disabled = !up;
  $('consult-btn').disabled = !up || !!state.consult;
  const x = state.consult;
  $('complete-transfer-btn').hidden = !x;
  $('complete-transfer-btn').disabled = !(x && x.held.state === 'established' && x.consult.state === 'established');
  if (up && !state.timer) {
    tick();
    state.timer = setInterval(tick, 1000);
  }
}

function tick() {
  updateQuality().catch(() => {});
  const s = state.call?.duration ?? 0;
  $('call-timer').textContent = `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

$('hangup-btn').addEventListener('click', () => state.call?.end());

$('hold-btn').addEventListener('click', async () => {
  const call = state.call;
  if (!call) return;
  $('hold-btn').disabled = true;
  try {
    await (call.held ? call.resume() : call.hold());
  } catch (err) {
    logEvent(`hold failed: ${err.message}`);
  } finally {
    renderCall();
  }
});

$('mute-btn').addEventListener('click', () => {
  const call = state.call;
  if (call) call.mute(!call.muted);
});

$('dtmf-btn').addEventListener('click', () => {
  const pad = $('dtmf-pad');
  pad.hidden = !pad.hidden;
  $('dtmf-btn').setAttribute('aria-pressed', String(!pad.hidden));
});

function sendDigit(d) {
  const call = state.call;
  if (!call) return;
  try {
    call.sendDTMF(d);
    callInfo.get(call).dtmfSent += d;
    showDigits(call);
  } catch (err) {
    logEvent(`DTMF failed: ${err.message}`);
  }
}

for (const b of $('dtmf-pad').querySelectorAll('button')) b.addEventListener('click', () => sendDigit(b.dataset.dtmf));

// The keyboard's digits, * and #: DTMF during a call, the number to dial
// otherwise. Not while typing in a field, nor with a modifier (shortcuts).
document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.defaultPrevented || !$('incoming').hidden) return;
  const t = ev.target;
  if (t instanceof HTMLElement && (t.isContentEditable || ['INPUT', 'SELECT', 'TEXTAREA'].includes(t.tagName))) return;
  if (ev.key === 'Escape' && !$('dtmf-pad').hidden) {
    $('dtmf-btn').click();
    return;
  }
  if (!/^[0-9*#]$/.test(ev.key)) return;
  if (state.call?.state === 'established') {
    ev.preventDefault();
    sendDigit(ev.key);
  } else if (!state.call && !$('dialer').hidden && state.session) {
    ev.preventDefault();
    $('address').value += ev.key;
  }
});

$('transfer-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const call = state.call;
  const to = $('transfer-to').value.trim();
  if (!call || !to) return;
  try {
    const code = await call.transfer(to);
    logEvent(`transfer to ${to} accepted (${code})`);
    $('transfer-to').value = '';
    call.end();
  } catch (err) {
    logEvent(`transfer failed: ${err.message}`);
  }
});

// Attended transfer: Consult holds the call on the card and calls the
// transfer target; Complete transfer hands the held party over to the
// target, whose call with us it replaces (docs/protocol.md §5.12). Both
// our calls then end: the transferee hangs up its call with us, the
// target the consult call.
$('consult-btn').addEventListener('click', async () => {
  const call = state.call;
  const to = $('transfer-to').value.trim();
  if (!call || !to || call.state !== 'established' || state.consult) return;
  try {
    if (!call.held) await call.hold();
  } catch (err) {
    logEvent(`hold failed: ${err.message}`);
    return;
  }
  const consult = placeCall(to);
  if (!consult) return;
  state.consult = { held: call, consult };
  logEvent(`consulting ${to}, ${call.remoteIdentity} on hold`);
  const over = () => {
    if (state.consult?.consult === consult) state.consult = null;
    if (state.call) renderCall();
  };
  consult.on('ended', over);
  call.on('ended', over);
  consult.on('state', () => state.call && renderCall());
  renderCall();
});

$('complete-transfer-btn').addEventListener('click', async () => {
  const x = state.consult;
  if (!x) return;
  $('complete-transfer-btn').disabled = true;
  try {
    const code = await x.held.transfer(x.consult.remoteIdentity, { replaces: x.consult });
    logEvent(`transfer of ${x.held.remoteIdentity} to ${x.consult.remoteIdentity} accepted (${code})`);
    $('transfer-to').value = '';
  } catch (err) {
    logEvent(`attended transfer failed: ${err.message}`);
    if (state.call) renderCall();
  }
});

setCallBack((peer) => placeCall(peer));

// ---- Start ------------------------------------------------------------------

updateModeFields();
const saved = sessionStorage.getItem(SIGNIN_KEY);
if (saved && Session.hasStored()) {
  // A reload: resume the session (and its calls) without asking again.
  try {
    signIn(JSON.parse(saved));
  } catch {
    sessionStorage.removeItem(SIGNIN_KEY);
  }
}
