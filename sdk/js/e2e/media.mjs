// Media peers for the browser tests: rtpengine (userspace, driven over its
// ng control protocol: bencoded dictionaries over UDP), baresip, a plain
// RTP softphone driven over its ctrl_tcp module, and coturn (TURN). Both run on
// loopback ports reserved as sip.mjs reserves them.
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { child, reservePort, reservePorts, startKamailio } from './sip.mjs';
import { startGateway, launchBrowser, waitCall, audioFlows, poll } from './harness.mjs';

/** Bencodes v: strings, integers, arrays and plain objects (ng's types). */
export function bencode(v) {
  if (typeof v === 'number') return `i${Math.trunc(v)}e`;
  if (typeof v === 'string') return `${Buffer.byteLength(v)}:${v}`;
  if (Array.isArray(v)) return `l${v.map(bencode).join('')}e`;
  const keys = Object.keys(v).sort();
  return `d${keys.map((k) => bencode(k) + bencode(v[k])).join('')}e`;
}

/** Decodes one bencoded value from buf at i; returns [value, next index]. */
export function bdecode(buf, i = 0) {
  const c = String.fromCharCode(buf[i]);
  if (c === 'i') {
    const e = buf.indexOf(0x65, i);
    return [Number(buf.subarray(i + 1, e).toString()), e + 1];
  }
  if (c === 'l' || c === 'd') {
    const out = c === 'l' ? [] : {};
    i++;
    while (buf[i] !== 0x65) {
      let v;
      if (c === 'l') {
        [v, i] = bdecode(buf, i);
        out.push(v);
      } else {
        let k;
        [k, i] = bdecode(buf, i);
        [v, i] = bdecode(buf, i);
        out[k] = v;
      }
    }
    return [out, i + 1];
  }
  const colon = buf.indexOf(0x3a, i);
  const n = Number(buf.subarray(i, colon).toString());
  return [buf.subarray(colon + 1, colon + 1 + n).toString(), colon + 1 + n];
}

/**
 * Starts rtpengine in userspace (--table=-1) with its ng listener and 40
 * media ports reserved, and resolves once it answers ping. Returns {ng
 * (its ng address), command(dict), list(), packets(callId), stop}.
 */
export async function startRTPEngine() {
  const ng = await reservePort();
  const media = await reservePorts(40);
  // Not Debian's /etc/rtpengine/rtpengine.conf, whose fixed CLI and HTTP
  // ports two rtpengines at once (a Go suite's and ours) would share.
  const p = child('rtpengine', 'rtpengine', [
    '--config-file=none', '--interface=127.0.0.1', `--listen-ng=127.0.0.1:${ng.port}`, '--table=-1', '--foreground', '--log-stderr', '--log-level=6',
    `--port-min=${media.port}`, `--port-max=${media.port + 39}`,
  ]);
  const sock = createSocket('udp4');
  await new Promise((r) => sock.bind(0, '127.0.0.1', r));
  const waiting = new Map();
  sock.on('message', (msg) => {
    const sp = msg.indexOf(0x20);
    const w = waiting.get(msg.subarray(0, sp).toString());
    if (w) w(bdecode(msg, sp + 1)[0]);
  });
  // One command, sent again every 200 ms (rtpengine answers a copy from
  // its cache) until answered or 5 s pass.
  const command = (dict) =>
    new Promise((resolve, reject) => {
      const cookie = randomBytes(8).toString('hex');
      const msg = Buffer.from(`${cookie} ${bencode(dict)}`);
      const send = () => sock.send(msg, ng.port, '127.0.0.1');
      const again = setInterval(send, 200);
      const timer = setTimeout(() => {
        clearInterval(again);
        waiting.delete(cookie);
        reject(new Error(`rtpengine: no answer to ${dict.command}\n${p.lines.slice(-30).join('\n')}`));
      }, 5000);
      waiting.set(cookie, (r) => {
        clearInterval(again);
        clearTimeout(timer);
        waiting.delete(cookie);
        resolve(r);
      });
      send();
    });
  const stop = async () => {
    sock.close();
    await p.stop();
    await ng.release();
    await media.release();
  };
  try {
    await command({ command: 'ping' });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ng: `127.0.0.1:${ng.port}`,
    lines: p.lines,
    command,
    /** The call ids rtpengine holds. */
    async list() {
      return (await command({ command: 'list', limit: 100 })).calls ?? [];
    },
    /**
     * The RTP packets rtpengine received from each side of call callId:
     * {tag: packets}, one entry per monologue (the browser's, the phone's).
     */
    async packets(callId) {
      const q = await command({ command: 'query', 'call-id': callId });
      const out = {};
      for (const [tag, mono] of Object.entries(q.tags ?? {})) {
        let n = 0;
        for (const m of mono.medias ?? []) for (const s of m.streams ?? []) n += s.stats?.packets ?? 0;
        out[tag] = n;
      }
      return out;
    },
    stop,
  };
}

/** Reads netstrings ("<len>:<payload>,") from a stream, calling onMessage with each payload. */
function netstrings(onMessage) {
  let buf = Buffer.alloc(0);
  return (data) => {
    buf = Buffer.concat([buf, data]);
    for (;;) {
      const colon = buf.indexOf(0x3a);
      if (colon < 0) return;
      const n = Number(buf.subarray(0, colon).toString());
      if (buf.length < colon + 1 + n + 1) return;
      onMessage(buf.subarray(colon + 1, colon + 1 + n).toString());
      buf = buf.subarray(colon + 1 + n + 1);
    }
  };
}

/**
 * Starts baresip as user@domain registered at Kamailio (its outbound
 * proxy), plain RTP (PCMU) only, its microphone a 440 Hz tone (ausine),
 * its speaker a bridge (aubridge): no sound card. Driven over ctrl_tcp. Returns {aor, cmd(command,
 * params), event(...types), stop}.
 */
export async function startBaresip({ user, domain, kamailio, autoAnswer = false }) {
  const dir = await mkdtemp(join(tmpdir(), 'jsonrtc-baresip-'));
  // baresip listens for SIP over TLS on sip_listen's port + 1.
  const sipPorts = await reservePorts(2);
  const ctrl = await reservePort();
  const modules = existsSync('/usr/lib/baresip/modules/ctrl_tcp.so') ? '/usr/lib/baresip/modules' : '/usr/lib/x86_64-linux-gnu/baresip/modules';
  const config = [
    'poll_method epoll',
    `sip_listen 127.0.0.1:${sipPorts.port}`,
    'call_local_timeout 120',
    // A 440 Hz tone as the microphone (ausine), whatever it receives;
    // what it receives goes to a bridge nobody reads (aubridge). A
    // bridge as both, an echo, stops sending for good once a hold
    // restarts its player (baresip 1.0.0).
    'audio_player aubridge,nil',
    'audio_source ausine,440',
    'ausrc_srate 48000', // ausine's only rate and layout; baresip
    'ausrc_channels 2', //   resamples and downmixes for PCMU
    'audio_alert aubridge,nil',
    `module_path ${modules}`,
    'module g711.so',
    'module aubridge.so',
    'module ausine.so',
    'module_tmp account.so',
    'module_app menu.so',
    'module_app ctrl_tcp.so',
    'statmode_default off',
    `ctrl_tcp_listen 127.0.0.1:${ctrl.port}`,
    '',
  ].join('\n');
  const aor = `sip:${user}@${domain}`;
  const account = `<${aor};transport=udp>;outbound="sip:${kamailio.addr}";regint=600;mwi=no;ptime=20;answermode=${autoAnswer ? 'auto' : 'manual'}\n`;
  await writeFile(join(dir, 'config'), config);
  await writeFile(join(dir, 'accounts'), account);
  await writeFile(join(dir, 'contacts'), '');
  const p = child(`baresip ${user}`, 'baresip', ['-f', dir]);
  const events = [];
  const eventWaiters = [];
  const replies = new Map();
  let sock;
  for (let i = 0; ; i++) {
    try {
      sock = await new Promise((res, rej) => {
        const s = connect({ host: '127.0.0.1', port: ctrl.port }, () => res(s));
        s.on('error', rej);
      });
      break;
    } catch (err) {
      if (p.status || i > 200) throw new Error(`baresip ctrl_tcp: ${err.message}\n${p.lines.slice(-30).join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  sock.on('error', () => {});
  sock.on(
    'data',
    netstrings((text) => {
      const m = JSON.parse(text);
      if (m.response) {
        replies.get(m.token)?.(m);
        return;
      }
      if (!m.event) return;
      const w = eventWaiters.findIndex((x) => x.types.includes(m.type));
      if (w >= 0) eventWaiters.splice(w, 1)[0].resolve(m);
      else events.push(m);
    }),
  );
  let tok = 0;
  const cmd = (command, params = '') =>
    new Promise((resolve, reject) => {
      const token = String(++tok);
      const t = setTimeout(() => reject(new Error(`baresip ${command}: no reply`)), 10000);
      replies.set(token, (m) => {
        clearTimeout(t);
        replies.delete(token);
        if (!m.ok) reject(new Error(`baresip ${command} ${params}: ${m.data}`));
        else resolve(m.data);
      });
      const msg = JSON.stringify({ command, params, token });
      sock.write(`${Buffer.byteLength(msg)}:${msg},`);
    });
  /** The next event of one of types (earlier events of other types are skipped). */
  const event = (...types) => {
    const i = events.findIndex((e) => types.includes(e.type));
    if (i >= 0) return Promise.resolve(events.splice(0, i + 1).pop());
    events.length = 0;
    return new Promise((resolve, reject) => {
      // Cleared on the event: a timer left pending keeps the test file's
      // process alive for up to 30 s after its last test.
      const timer = setTimeout(() => {
        const j = eventWaiters.indexOf(w);
        if (j >= 0) {
          eventWaiters.splice(j, 1);
          reject(new Error(`baresip ${user}: no ${types.join('/')} event\n${p.lines.slice(-30).join('\n')}`));
        }
      }, 30000);
      const w = {
        types,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      eventWaiters.push(w);
    });
  };
  const stop = async () => {
    await cmd('quit').catch(() => {});
    await Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000))]);
    sock.destroy();
    await p.stop();
    await rm(dir, { recursive: true, force: true });
    await sipPorts.release();
    await ctrl.release();
  };
  if (!(await cmd('reginfo')).includes('OK')) await event('REGISTER_OK');
  return { aor, cmd, event, lines: p.lines, stop };
}

/** Resolves once a UDP socket is bound on 127.0.0.1:port (or the process p exits). */
async function udpBound(p, port, timeout = 15000) {
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const end = Date.now() + timeout;
  for (;;) {
    const udp = await readFile('/proc/net/udp', 'utf8');
    if (udp.split('\n').some((l) => l.trim().split(/\s+/)[1] === want)) return;
    if (p.status || Date.now() > end) throw new Error(`${p.name} not listening on UDP ${port}: ${p.lines.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts coturn on loopback with the TURN REST scheme (use-auth-secret,
 * static-auth-secret `secret`): UDP only, relaying between loopback
 * addresses (the browsers' own). Returns {url, port, credential(identity,
 * expiresAt), stop}; credential makes one as jsonrtcd does, for tests of
 * what coturn refuses.
 */
export async function startCoturn({ secret, realm = 'example.com' }) {
  const listen = await reservePort();
  const relay = await reservePorts(20);
  const p = child('turnserver', 'turnserver', [
    '-n', '--listening-ip=127.0.0.1', `--listening-port=${listen.port}`, '--relay-ip=127.0.0.1',
    `--min-port=${relay.port}`, `--max-port=${relay.port + 19}`, '--use-auth-secret', `--static-auth-secret=${secret}`,
    `--realm=${realm}`, '--no-tls', '--no-dtls', '--no-tcp', '--allow-loopback-peers', '--no-cli', '--fingerprint',
    '--log-file=stdout', '--simple-log', '--no-software-attribute', '--pidfile=',
  ]);
  const stop = async () => {
    await p.stop();
    await listen.release();
    await relay.release();
  };
  try {
    await udpBound(p, listen.port);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `turn:127.0.0.1:${listen.port}?transport=udp`,
    port: listen.port,
    lines: p.lines,
    credential(identity, expiresAt) {
      const username = `${Math.floor(expiresAt / 1000)}:${identity}`;
      return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
    },
    stop,
  };
}

/**
 * What a browser call with a plain RTP phone needs: rtpengine, Kamailio as
 * registrar and proxy of domain, jsonrtcd anchoring its SIP calls' media
 * in that rtpengine, baresip registered as phone@domain, and Chromium.
 * Each one's stop goes on `running` as it starts (stop them in reverse).
 */
export async function startPhoneRig(running, { domain = 'example.com', autoAnswer = true } = {}) {
  const engine = await startRTPEngine();
  running.push(engine.stop);
  const kamailio = await startKamailio({ domain });
  running.push(kamailio.stop);
  const gw = await startGateway({ config: anchoredConfig(domain, kamailio, engine) });
  running.push(gw.stop);
  const phone = await startBaresip({ user: 'phone', domain, kamailio, autoAnswer });
  running.push(phone.stop);
  const browser = await launchBrowser(gw);
  running.push(() => browser.close());
  return { engine, kamailio, gw, phone, browser };
}

/** jsonrtcd's configuration: SIP through kamailio for domain, media anchored in engine. */
export function anchoredConfig(domain, kamailio, engine) {
  return (
    `sip:\n  listen:\n    udp: 127.0.0.1:0\n  domain: ${domain}\n  outbound_proxy: sip:${kamailio.addr}\n  registrar: sip:${kamailio.addr}\n  user_agent: jsonrtc-e2e\n` +
    `media:\n  rtpengine: [${engine.ng}]\n`
  );
}

/**
 * The page calls the rig's phone (startPhoneRig, answering at once);
 * resolves with the call's rtpengine id once audio flows on the page.
 */
export async function callPhone(page, { phone, engine }, domain = 'example.com') {
  await page.fill('#address', `phone@${domain}`);
  await page.click('#call-btn');
  await waitCall(page, 'state', 'established');
  await phone.event('CALL_ESTABLISHED');
  const [id] = await poll(() => engine.list(), (ids) => ids.length === 1, { message: 'one rtpengine call' });
  await audioFlows(page);
  return id;
}

/** The audio energy the page's current call has received so far (inbound-rtp totalAudioEnergy). */
export function inboundEnergy(page) {
  return page.evaluate(async () => {
    let e = 0;
    for (const s of (await window.softphone.call.peerConnection.getStats()).values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') e += s.totalAudioEnergy ?? 0;
    }
    return e;
  });
}
