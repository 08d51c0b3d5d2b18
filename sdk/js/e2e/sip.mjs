// SIP peers for the browser tests: a Kamailio proxy/registrar and SIPp
// scenarios, started on loopback and stopped by the test. Kamailio and
// SIPp cannot be handed a bound socket, so their ports are reserved as the
// Go suites reserve theirs (reservePort).
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { accessSync, constants } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const SCENARIOS = join(here, 'scenarios');

/** Reports whether an executable named bin is on the PATH. */
export function onPath(bin) {
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {
      /* not here */
    }
  }
  return false;
}

/**
 * Whether the tests run under CI (CI=true or 1): there a missing tool
 * fails a test instead of skipping it, as internal/testenv does for Go.
 */
export const CI = /^(1|t|true)$/i.test(process.env.CI || '');

/**
 * What a test that runs the executables bins does when one is missing:
 * `skip` is its skip option (a reason, or false), and `check()`, called
 * first in the test, throws under CI, where it runs regardless.
 */
export function needTools(bins, hint) {
  const missing = bins.filter((b) => !onPath(b));
  const reason = missing.length ? `missing: ${missing.join(' and ')} on the PATH (${hint})` : false;
  return {
    skip: CI ? false : reason,
    check() {
      if (reason) throw new Error(`${reason}; under CI a missing dependency fails the test instead of skipping it`);
    },
  };
}

// Ports and their locks, as internal/testenv/port.go (which says why): a
// port from [PORT_BASE, PORT_BASE+PORT_COUNT), below the kernel's ephemeral
// range, locked across processes (Go's and Node's alike) by a TCP listener
// on its twin at LOCK_BASE.
const PORT_BASE = 20000;
const PORT_COUNT = 5000;
const LOCK_BASE = PORT_BASE + PORT_COUNT;

/** Resolves true if a server (net or dgram) binds 127.0.0.1:port; closes it again unless keep. */
function binds(server, port, keep = false) {
  return new Promise((res) => {
    const done = (ok) => (ok && !keep ? server.close(() => res(true)) : res(ok));
    server.once('error', () => done(false));
    if (server.listen) server.listen({ port, host: '127.0.0.1', exclusive: true }, () => done(true));
    else server.bind({ port, address: '127.0.0.1', exclusive: true }, () => done(true));
  });
}

/**
 * Reserves a port on 127.0.0.1, free for UDP and TCP, until release():
 * for a peer started after the call and stopped before release.
 * Resolves {port, release}.
 */
export async function reservePort() {
  const first = Math.floor(Math.random() * PORT_COUNT);
  for (let i = 0; i < PORT_COUNT; i++) {
    const off = (first + i) % PORT_COUNT;
    const lock = createServer();
    if (!(await binds(lock, LOCK_BASE + off, true))) continue; // another test holds it
    const port = PORT_BASE + off;
    if ((await binds(createSocket('udp4'), port)) && (await binds(createServer(), port))) {
      let released = false;
      const release = () =>
        new Promise((r) => {
          if (released) return r();
          released = true;
          lock.close(() => r());
        });
      return { port, release };
    }
    await new Promise((r) => lock.close(() => r()));
  }
  throw new Error(`no free port in ${PORT_BASE}-${PORT_BASE + PORT_COUNT - 1}`);
}

/**
 * Reserves n consecutive ports on 127.0.0.1 (rtpengine's media range),
 * each free for UDP, locked as reservePort locks one. Resolves {port (the
 * first), release}.
 */
export async function reservePorts(n) {
  const first = Math.floor(Math.random() * (PORT_COUNT - n));
  for (let i = 0; i < PORT_COUNT - n; i++) {
    const off = (first + i) % (PORT_COUNT - n);
    const locks = [];
    let ok = true;
    for (let j = 0; j < n && ok; j++) {
      const lock = createServer();
      ok = (await binds(lock, LOCK_BASE + off + j, true)) && (await binds(createSocket('udp4'), PORT_BASE + off + j));
      locks.push(lock);
      if (!ok) break;
    }
    const release = () => Promise.all(locks.map((l) => new Promise((r) => (l.listening ? l.close(() => r()) : r()))));
    if (ok) return { port: PORT_BASE + off, release };
    await release();
  }
  throw new Error(`no ${n} free consecutive ports in ${PORT_BASE}-${PORT_BASE + PORT_COUNT - 1}`);
}

/**
 * A child process whose output is kept (the last lines) for failure
 * reports. exited resolves with {code, signal}; stop() ends it (SIGTERM,
 * then SIGKILL after 5 s) and waits for it.
 */
export function child(name, cmd, args, { cwd } = {}) {
  const proc = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const keep = (buf) => {
    for (const line of buf.toString().split('\n')) if (line.trim()) lines.push(line);
    if (lines.length > 2000) lines.splice(0, lines.length - 2000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let status = null;
  const exited = new Promise((r) => {
    proc.on('error', (err) => {
      lines.push(`${name}: ${err.message}`);
      r((status = { code: -1, signal: null }));
    });
    proc.on('exit', (code, signal) => r((status = { code, signal })));
  });
  return {
    name,
    proc,
    lines,
    exited,
    get status() {
      return status;
    },
    async stop() {
      if (status) return status;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const s = await exited;
      clearTimeout(t);
      return s;
    },
  };
}

/** Sends OPTIONS to 127.0.0.1:port and resolves true on a 200 within timeout ms. */
function optionsPing(port, timeout) {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const done = (ok) => {
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeout);
    s.on('error', () => done(false));
    s.on('message', (m) => done(m.toString().startsWith('SIP/2.0 200')));
    s.bind(0, '127.0.0.1', () => {
      const la = `127.0.0.1:${s.address().port}`;
      const id = `${process.pid}-${Date.now().toString(36)}`;
      const msg =
        `OPTIONS sip:127.0.0.1:${port} SIP/2.0\r\nVia: SIP/2.0/UDP ${la};branch=z9hG4bK${id};rport\r\n` +
        `Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p${id}\r\nTo: <sip:127.0.0.1:${port}>\r\n` +
        `Call-ID: probe-${id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
      s.send(msg, port, '127.0.0.1');
    });
  });
}

/** Kamailio's module directory (Debian's, or wherever tm.so is). */
async function kamailioModules() {
  for (const dir of ['/usr/lib/x86_64-linux-gnu/kamailio/modules', '/usr/lib/aarch64-linux-gnu/kamailio/modules', '/usr/lib/kamailio/modules', '/usr/lib64/kamailio/modules']) {
    try {
      accessSync(join(dir, 'tm.so'));
      return dir;
    } catch {
      /* next */
    }
  }
  throw new Error('Kamailio modules (tm.so) not found');
}

/**
 * The proxy and registrar of `domain`: REGISTER is saved in memory; a
 * SUBSCRIBE for Event: message-summary goes, record-routed, to the
 * voicemail server at 127.0.0.1:`voicemailPort` whoever's mailbox it is
 * (as a PBX routes them); an INVITE for echo@`domain` goes to the SIPp
 * echo at 127.0.0.1:`echoPort`, other INVITEs to the registered user;
 * in-dialog requests follow their routes. There is no presence server:
 * PUBLISH and other SUBSCRIBEs get 489 Bad Event.
 */
function kamailioConfig({ domain, port, modules, voicemailPort, echoPort }) {
  return `#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=1
auto_aliases=no
alias="${domain}"
listen=udp:127.0.0.1:${port}
mpath="${modules}/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "sanity.so"
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (!sanity_check("17895", "7")) {
		exit;
	}
	if (is_method("OPTIONS") && uri==myself && $rU==$null) {
		sl_send_reply("200", "OK");
		exit;
	}
	if (!is_method("ACK")) {
		if (t_precheck_trans()) {
			t_check_trans();
			exit;
		}
		t_check_trans();
	}
	if (has_totag()) {
		if (loose_route()) {
			# An in-dialog request to a GRUU (RFC 5627 section 7), as
			# jsonrtcd's dialogs have: the binding it names.
			if (uri==myself && $rU!=$null && !lookup("location")) {
				sl_send_reply("404", "Not Found");
				exit;
			}
			route(RELAY);
		}
		if (!is_method("ACK")) {
			sl_send_reply("404", "Not here");
		}
		exit;
	}
	remove_hf("Route");
	if (is_method("INVITE") && $rU == "echo") {
		record_route();
		$du = "sip:127.0.0.1:${echoPort}";
		route(RELAY);
	}
	if (is_method("INVITE")) {
		# Calls between registered users (the media test's browser and
		# baresip).
		if (!lookup("location")) {
			sl_send_reply("404", "Not Found");
			exit;
		}
		record_route();
		route(RELAY);
	}
	if (is_method("REGISTER")) {
		if (!save("location")) {
			sl_reply_error();
		}
		exit;
	}
	if (is_method("SUBSCRIBE") && $hdr(Event) == "message-summary") {
		record_route();
		$du = "sip:127.0.0.1:${voicemailPort}";
		route(RELAY);
	}
	if (is_method("PUBLISH|SUBSCRIBE")) {
		sl_send_reply("489", "Bad Event");
		exit;
	}
	sl_send_reply("404", "Not Found");
	exit;
}

route[RELAY] {
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
`;
}

/**
 * Starts Kamailio (see kamailioConfig) on a free UDP port and resolves once
 * it answers OPTIONS. Returns {port, addr, lines, stop}.
 */
export async function startKamailio({ domain, voicemailPort, echoPort }) {
  const dir = await mkdtemp(join(tmpdir(), 'jsonrtc-kamailio-'));
  const reserved = await reservePort();
  try {
    const { port } = reserved;
    const cfg = join(dir, 'kamailio.cfg');
    await writeFile(cfg, kamailioConfig({ domain, port, modules: await kamailioModules(), voicemailPort, echoPort }));
    const k = child('kamailio', 'kamailio', ['-DD', '-E', '-f', cfg, '-P', join(dir, 'kamailio.pid'), '-Y', dir, '-w', dir, '-m', '64', '-M', '8']);
    const stop = async () => {
      await k.stop();
      await rm(dir, { recursive: true, force: true });
      await reserved.release();
    };
    // Ready when it answers OPTIONS (each probe waits 200 ms for its answer).
    const deadline = Date.now() + 15000;
    while (!(await optionsPing(port, 200))) {
      if (k.status || Date.now() > deadline) {
        await stop();
        throw new Error(`kamailio ${k.status ? `exited ${JSON.stringify(k.status)}` : 'not answering'} on 127.0.0.1:${port}\n${k.lines.slice(-60).join('\n')}`);
      }
    }
    return { port, addr: `127.0.0.1:${port}`, lines: k.lines, stop };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    await reserved.release();
    throw err;
  }
}

/**
 * Parses the commands SIPp sends on its 3PCC socket: header lines, like a
 * SIP message without a start line, each command ended by an ESC (0x1b).
 */
function commandReader(onCommand) {
  let buf = '';
  return (data) => {
    buf += data.toString();
    for (let i; (i = buf.indexOf('\x1b')) >= 0; ) {
      const text = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (!text) continue;
      const headers = {};
      for (const line of text.split(/\r?\n/)) {
        const c = line.indexOf(':');
        if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
      onCommand({ text, headers });
    }
  };
}

/**
 * Runs SIPp as a UAS with `scenario` (a file under scenarios/, copied to a
 * temporary directory where SIPp writes its logs) for one call, on a free
 * UDP port, with `args` added to its command line. A scenario with <sendCmd>/<recvCmd> (threePCC) talks to the
 * test over SIPp's 3PCC socket: SIPp connects at startup to a TCP server
 * the test listens on (port 0). Returns {port,
 * command() (the next command SIPp sent: {text, headers}), cue(callId)
 * (sends a command to the call), result() (waits for SIPp's exit:
 * {code, signal}), report() (output and logs), stop()}.
 */
export async function startSipp(scenario, { threePCC = false, timeout = '60s', args: extra = [] } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'jsonrtc-sipp-'));
  await copyFile(join(SCENARIOS, scenario), join(dir, scenario));
  const reserved = await reservePort();
  const { port } = reserved;
  const args = ['-sf', scenario, '-i', '127.0.0.1', '-p', String(port), '-m', '1', '-nostdin', '-timeout', timeout, '-timeout_error', '-trace_err', '-trace_msg', '-max_recv_loops', '1000', ...extra];

  let server = null;
  let twin = null;
  const commands = [];
  const waiters = [];
  let connected;
  const twinUp = new Promise((r) => (connected = r));
  if (threePCC) {
    server = createServer((sock) => {
      if (twin) return sock.destroy();
      twin = sock;
      sock.on('data', commandReader((c) => (waiters.length ? waiters.shift()(c) : commands.push(c))));
      sock.on('error', () => {});
      connected();
    });
    await new Promise((res, rej) => {
      server.on('error', rej);
      server.listen(0, '127.0.0.1', res);
    });
    args.push('-3pcc', `127.0.0.1:${server.address().port}`);
  }

  const p = child(`sipp ${scenario}`, 'sipp', args, { cwd: dir });
  const cleanup = async () => {
    twin?.destroy();
    await new Promise((r) => (server ? server.close(() => r()) : r()));
    await rm(dir, { recursive: true, force: true });
    await reserved.release();
  };
  const stop = async () => {
    await p.stop();
    await cleanup();
  };

  // Up when its SIP port shows in /proc/net/udp and, with 3PCC, it has
  // connected to the test's socket.
  const bound = async () => {
    const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    for (;;) {
      const udp = await readFile('/proc/net/udp', 'utf8');
      if (udp.split('\n').some((l) => l.trim().split(/\s+/)[1] === want)) return;
      if (p.status) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  let timer;
  const up = await Promise.race([
    Promise.all([threePCC ? twinUp : null, bound()]).then(() => 'up'),
    p.exited.then(() => 'exited'),
    new Promise((r) => (timer = setTimeout(() => r('timeout'), 15000))),
  ]);
  clearTimeout(timer);
  if (up !== 'up') {
    const out = p.lines.slice(-40).join('\n');
    await stop();
    throw new Error(`sipp ${scenario} did not start (${up}): ${out}`);
  }

  const logs = async (suffix) => {
    const f = (await readdir(dir).catch(() => [])).find((n) => n.endsWith(suffix));
    return f ? readFile(join(dir, f), 'utf8').catch(() => '') : '';
  };
  return {
    port,
    addr: `127.0.0.1:${port}`,
    /** The next command SIPp sent on the 3PCC socket. */
    command(ms = 20000) {
      if (commands.length) return Promise.resolve(commands.shift());
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no 3PCC command from sipp ${scenario} within ${ms} ms`));
        }, ms);
        const w = (c) => {
          clearTimeout(t);
          resolve(c);
        };
        waiters.push(w);
      });
    },
    /** Sends a command to the call callId (its <recvCmd> takes it). */
    cue(callId) {
      twin.write(`Call-ID: ${callId}\r\nFrom: test\r\n\r\n\x1b`);
    },
    /** Waits (bounded) for SIPp to exit and resolves with its status. */
    async result(ms = 30000) {
      let t;
      const r = await Promise.race([p.exited, new Promise((res) => (t = setTimeout(() => res(null), ms)))]);
      clearTimeout(t);
      if (!r) throw new Error(`sipp ${scenario} still running after ${ms} ms`);
      return r;
    },
    async report() {
      return `--- sipp ${scenario} output\n${p.lines.slice(-60).join('\n')}\n--- errors\n${(await logs('_errors.log')).slice(-4000)}\n--- messages\n${(await logs('_messages.log')).slice(-12000)}`;
    },
    stop,
  };
}
