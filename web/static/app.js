// The demo softphone: plain ES modules on the jsonrtc SDK (served under
// ./sdk/). Query parameters for tests and tinkering: ws (WebSocket path),
// ping and pingPeriod (keepalive, ms), reconnectTimeout (ms the session
// tries to resume before it gives up), log=1 (frames to the console),
// mailbox (the voicemail box to watch; default: the user's own, e.g.
// mailbox=sip:vm-alice@example.com).
import { Session } from './sdk/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const SIGNIN_KEY = 'softphone.signin';
/** This tab's published status and note, so that a reload publishes the same. */
const PRESENCE_KEY = 'softphone.presence';

const state = {
  /** @type {Session|null} */ session: null,
  /** @type {import('./sdk/call.js').Call|null} */ call: null,
  /** @type {import('./sdk/call.js').Call|null} */ incoming: null,
  timer: null,
  noticeTimer: null,
  /** Every connection state shown, in order (the tests read it). */
  connHistory: [],
  watched: new Map(),
  dtmfSent: '',
  dtmfReceived: '',
};
// For the browser tests and the console.
window.softphone = state;

/**
 * The gateway's settings for this page (/config.json): the STUN/TURN
 * servers (web.ice_servers) and whether it runs in open identity mode.
 * A gateway without it (an older one) means no ICE servers.
 */
const pageConfig = fetch('config.json')
  .then((r) => (r.ok ? r.json() : {}))
  .catch(() => ({}));

/**
 * The page's settings for a sign-in: with web.turn set, jsonrtcd adds a
 * TURN server with a credential of the page's own when the request
 * authenticates for the application (the token, else the guest cookie;
 * anyone in open mode). Null when the fetch fails: the settings loaded
 * with the page then serve.
 */
function configFor(creds) {
  const app = wsUrl().split('/').pop();
  const headers = creds.mode === 'token' ? { Authorization: `Bearer ${creds.token}` } : {};
  return fetch(`config.json?app=${encodeURIComponent(app)}`, { headers, credentials: 'same-origin' })
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null);
}

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

function logEvent(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const ol = $('events');
  ol.prepend(li);
  while (ol.children.length > 60) ol.lastChild.remove();
}

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
  const conf = (await configFor(creds)) ?? (await pageConfig);
  const session = new Session({
    url: wsUrl(),
    identity: creds.mode === 'name' ? creds.name : undefined,
    token: creds.mode === 'token' ? creds.token : undefined,
    keepalive: { interval: ping, busyInterval: ping, period: Number(params.get('pingPeriod')) || undefined },
    reconnect: { timeout: Number(params.get('reconnectTimeout')) || undefined },
    rtc: {
      iceServers: Array.isArray(conf.iceServers) ? conf.iceServers : [],
      // ?relay=1: media through the TURN relays only (a test of them).
      iceTransportPolicy: params.get('relay') ? 'relay' : 'all',
    },
    logger: params.get('log') ? { debug: console.debug, info: console.info, warn: console.warn, error: console.error } : undefined,
  });
  state.session = session;
  session.on('state', ({ state: s, error }) => {
    setConnState(s);
    logEvent(`session ${s}${error ? `: ${error.message}` : ''}`);
    if (s === 'failed' || s === 'closed') signedOut(error);
  });
  session.on('incomingcall', onIncomingCall);
  session.on('callrestored', (call) => {
    logEvent(`call with ${call.remoteIdentity} restored`);
    showCall(call);
  });
  session.on('subscriptionrestored', onSubscriptionRestored);
  session.on('message', onChatMessage);
  session.on('resumefailed', () => logEvent('the session could not be resumed: new session'));
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

function signedOut(error) {
  sessionStorage.removeItem(SIGNIN_KEY);
  sessionStorage.removeItem(PRESENCE_KEY);
  $('my-status').value = 'available';
  $('my-note').value = '';
  hideIncoming();
  hideCall();
  $('phone').hidden = true;
  $('signin').hidden = false;
  $('presence-list').replaceChildren();
  state.watched.clear();
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
  // Re-attach the contacts kept across a reload.
  for (const sub of session.subscriptions.values()) if (sub.package === 'presence') addContact(sub);
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
  try {
    await session.publishPresence({ ...statusMap[status], note: note || undefined });
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
  addContact(state.session.watchPresence(target));
});

function addContact(sub) {
  if (state.watched.has(sub.target)) return;
  const li = document.createElement('li');
  li.dataset.target = sub.target;
  li.dataset.status = 'unknown';
  const dot = document.createElement('span');
  dot.className = 'status';
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = sub.target;
  const what = document.createElement('span');
  what.className = 'what';
  what.textContent = 'pending';
  const callBtn = document.createElement('button');
  callBtn.type = 'button';
  callBtn.textContent = 'Call';
  callBtn.addEventListener('click', () => placeCall(sub.target));
  const chatBtn = document.createElement('button');
  chatBtn.type = 'button';
  chatBtn.textContent = 'Chat';
  chatBtn.addEventListener('click', () => {
    $('chat-to').value = sub.target;
    $('chat-input').focus();
  });
  const stopBtn = document.createElement('button');
  stopBtn.type = 'button';
  stopBtn.textContent = '✕';
  stopBtn.title = 'Stop watching';
  stopBtn.addEventListener('click', () => sub.end());
  const info = document.createElement('span');
  info.className = 'info';
  info.append(who, what);
  li.append(dot, info, callBtn, chatBtn, stopBtn);
  $('presence-list').append(li);
  state.watched.set(sub.target, li);
  const show = (p) => {
    const busy = p.activity === 'busy' || p.activity === 'on-the-phone';
    li.dataset.status = p.status !== 'open' ? 'closed' : busy ? 'busy' : p.activity === 'away' ? 'away' : 'open';
    what.textContent = [p.status === 'open' ? p.activity || 'online' : 'offline', p.note].filter(Boolean).join(' · ');
    what.title = what.textContent;
  };
  if (sub.last) show(sub.last);
  sub.on('notify', show);
  sub.ready.then(
    () => {
      if (!sub.last) what.textContent = 'watching';
    },
    () => {},
  );
  stopBtn.addEventListener('click', () => {
    li.remove();
    state.watched.delete(sub.target);
  });
  sub.on('ended', (err) => {
    // Ended by the gateway or by an error: keep the contact, say so.
    if (!li.isConnected) return;
    li.dataset.status = 'error';
    what.textContent = err ? `unavailable (${err.code ?? ''})` : 'ended';
  });
}

// ---- Chat -------------------------------------------------------------------

function chatLine(cls, from, body) {
  const li = document.createElement('li');
  li.className = cls;
  if (from) {
    const f = document.createElement('span');
    f.className = 'from';
    f.textContent = from;
    li.append(f);
  }
  li.append(document.createTextNode(body));
  $('chat-log').append(li);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
  return li;
}

function onChatMessage(msg) {
  if (!$('chat-to').value) $('chat-to').value = msg.from;
  chatLine('in', msg.from, msg.body);
  logEvent(`message from ${msg.from}`);
}

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const to = $('chat-to').value.trim();
  const body = $('chat-input').value;
  if (!to || !body || !state.session) return;
  $('chat-input').value = '';
  const li = chatLine('out pending', null, body);
  try {
    await state.session.sendMessage(to, body);
    li.classList.remove('pending');
    li.dataset.delivered = 'true';
  } catch (err) {
    li.classList.remove('pending');
    chatLine('system', null, `not delivered to ${to}: ${err.reason ?? err.message}`);
  }
});

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

function placeCall(target) {
  if (!state.session?.connected) return;
  if (state.call) {
    logEvent('already in a call');
    return;
  }
  const call = state.session.call(target, { video: $('video').checked });
  logEvent(`calling ${target}`);
  showCall(call);
}

// ---- Incoming ---------------------------------------------------------------

function onIncomingCall(call) {
  if (state.call || (state.incoming && state.incoming !== call)) {
    call.decline(486);
    return;
  }
  state.incoming = call;
  $('incoming-title').textContent = call.video ? 'Incoming video call' : 'Incoming call';
  $('incoming').dataset.video = String(call.video);
  $('incoming-from').textContent = call.remoteIdentity;
  $('incoming').hidden = false;
  logEvent(`incoming ${call.video ? 'video ' : ''}call from ${call.remoteIdentity} (${call.kinds.join(', ')})`);
  call.on('ended', () => {
    if (state.incoming === call) hideIncoming();
  });
}

function hideIncoming() {
  state.incoming = null;
  $('incoming').hidden = true;
}

$('accept-btn').addEventListener('click', () => {
  const call = state.incoming;
  if (!call) return;
  hideIncoming();
  showCall(call);
  // A video offer is answered with the camera too, so video goes both ways.
  call.accept({ video: call.video }).catch((err) => logEvent(`accept failed: ${err.message}`));
});

$('decline-btn').addEventListener('click', () => {
  const call = state.incoming;
  hideIncoming();
  call?.decline();
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

function showCall(call) {
  state.call = call;
  clearTimeout(state.noticeTimer);
  $('call-notice').hidden = true;
  state.dtmfSent = '';
  state.dtmfReceived = '';
  $('dtmf-sent').textContent = '';
  $('dtmf-received').textContent = '';
  $('call-peer').textContent = call.remoteIdentity;
  $('incall').hidden = false;
  $('dialer').hidden = true;
  renderCall();
  call.on('state', ({ state: s, code, reason }) => {
    logEvent(`call ${s}${code ? ` ${code}` : ''}${reason ? ` (${reason})` : ''}`);
    renderCall();
  });
  call.on('hold', renderCall);
  call.on('mute', renderCall);
  call.on('remotestream', (stream) => {
    $('remote-audio').srcObject = stream;
    $('remote-video').srcObject = stream;
    $('videos').hidden = stream.getVideoTracks().length === 0;
  });
  call.on('localstream', (stream) => {
    $('local-video').srcObject = stream;
  });
  call.on('dtmf', ({ digits }) => {
    state.dtmfReceived += digits;
    $('dtmf-received').textContent = state.dtmfReceived;
    logEvent(`DTMF received: ${digits}`);
  });
  call.on('transfer', (req) => {
    logEvent(`transferred to ${req.referTo}`);
    req.accept();
    call.end();
    setTimeout(() => placeCall(req.referTo), 0);
  });
  call.on('ice', (s) => logEvent(`ICE ${s}`));
  call.on('error', (err) => logEvent(`call error: ${err.message}`));
  call.on('ended', ({ state: s, code, reason }) => {
    if (state.call !== call) return;
    const el = $('call-status');
    el.textContent = `${stateText[s]}${code ? ` (${code}${reason ? ' ' + reason : ''})` : ''}`;
    el.dataset.state = s;
    hideCall();
    const outcome = code >= 300 ? callOutcome(code, call.remoteIdentity) : null;
    if (outcome) showCallNotice(outcome, code);
  });
  if (call.remoteStream) {
    $('remote-audio').srcObject = call.remoteStream;
  }
}

/** Why a call failed, in words, by its final response (RFC 3261 §21). */
function callOutcome(code, peer) {
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
    default:
      return `call failed (${code})`;
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

function hideCall() {
  clearInterval(state.timer);
  state.timer = null;
  state.call = null;
  $('incall').hidden = true;
  $('dialer').hidden = false;
  $('dtmf-pad').hidden = true;
  $('dtmf-btn').setAttribute('aria-pressed', 'false');
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
  if (up && !state.timer) {
    tick();
    state.timer = setInterval(tick, 1000);
  }
}

function tick() {
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

for (const b of $('dtmf-pad').querySelectorAll('button')) {
  b.addEventListener('click', () => {
    const call = state.call;
    if (!call) return;
    try {
      call.sendDTMF(b.dataset.dtmf);
      state.dtmfSent += b.dataset.dtmf;
      $('dtmf-sent').textContent = state.dtmfSent;
    } catch (err) {
      logEvent(`DTMF failed: ${err.message}`);
    }
  });
}

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
