// Runs the browser tests (npm run test:e2e): builds jsonrtcd once for the
// whole run and hands it to every test file as JSONRTCD_BIN, so that the
// gateways the files start (some twenty) do not each link their own; then
// runs the test files, E2E_CONCURRENCY (default 2) at a time, each in its
// own `node --test`.
//
// Files may run at once because they share nothing but the CPU: each has
// its own gateways, ports (reservePort's locks), data directories, peers
// and browser. They are scheduled here rather than by node's runner,
// which (Node 20) takes them in name order: the two longest (phone and
// softphone, some two minutes each) go first, so that neither starts
// last and runs alone at the end. A file's size stands for its duration.
//
// Each file's output is printed whole once it ends (TAP, or what
// --test-reporter asks), then its wall time; last, the totals, with the
// "# skipped N" line scripts/test reads. Arguments are options for node
// --test (--test-reporter=spec, --test-name-pattern=...) and files; no
// files: every e2e/*.test.mjs.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..', '..');

// A run stopped (a CI timeout, ^C) stops what it runs: the test files
// end, and their after hooks stop their gateways and browsers.
const children = new Set();
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    stopping = true;
    for (const c of children) c.kill(sig);
  });
}

/** Runs cmd; resolves {code, out} (out: its stdout and stderr, when capture). */
function run(cmd, args, { capture = false, ...opts } = {}) {
  return new Promise((res) => {
    const p = spawn(cmd, args, { stdio: capture ? ['ignore', 'pipe', 'pipe'] : 'inherit', ...opts });
    children.add(p);
    const out = [];
    if (capture) {
      p.stdout.on('data', (b) => out.push(b));
      p.stderr.on('data', (b) => out.push(b));
    }
    p.on('error', (err) => {
      out.push(Buffer.from(`${cmd}: ${err.message}\n`));
      children.delete(p);
      res({ code: 1, out: Buffer.concat(out).toString() });
    });
    p.on('close', (code, sig) => {
      children.delete(p);
      res({ code: code ?? (sig ? 1 : 0), out: Buffer.concat(out).toString() });
    });
  });
}

const env = { ...process.env };
let dir = null;
if (!env.JSONRTCD_BIN) {
  dir = await mkdtemp(join(tmpdir(), 'jsonrtc-e2e-bin-'));
  env.JSONRTCD_BIN = join(dir, 'jsonrtcd');
  const started = Date.now();
  const { code } = await run('go', ['build', '-o', env.JSONRTCD_BIN, './cmd/jsonrtcd'], { cwd: repoRoot });
  if (code !== 0) {
    await rm(dir, { recursive: true, force: true });
    console.error(`go build ./cmd/jsonrtcd: exit ${code}`);
    process.exit(code);
  }
  console.log(`# jsonrtcd built once for the run in ${Date.now() - started} ms`);
}

const options = process.argv.slice(2).filter((a) => a.startsWith('-'));
let files = process.argv.slice(2).filter((a) => !a.startsWith('-'));
if (!files.length) files = (await readdir(here)).filter((n) => n.endsWith('.test.mjs')).map((n) => join(here, n));
const sized = await Promise.all(files.map(async (f) => ({ f, size: (await stat(f)).size })));
const queue = sized.sort((a, b) => b.size - a.size).map((x) => x.f);

const concurrency = Math.max(1, Number(env.E2E_CONCURRENCY) || 2);
// The totals node's runner prints at the end of each file's output: TAP
// "# pass 3", spec "ℹ pass 3".
const totals = { tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
const failed = [];
const started = Date.now();

async function worker() {
  while (queue.length && !stopping) {
    const file = queue.shift();
    const t0 = Date.now();
    // --test-force-exit: the file's process ends once its tests and after
    // hooks have, not when the last timer or socket it left behind goes.
    const { code, out } = await run(process.execPath, ['--test', '--test-force-exit', ...options, file], { capture: true, env });
    process.stdout.write(out.endsWith('\n') || !out ? out : out + '\n');
    const name = basename(file);
    console.log(`# file ${name}: ${code === 0 ? 'ok' : `FAILED (exit ${code})`} in ${Date.now() - t0} ms`);
    for (const k of Object.keys(totals)) {
      const m = [...out.matchAll(new RegExp(`^(?:# |ℹ )${k} (\\d+)$`, 'gm'))].at(-1);
      if (m) totals[k] += Number(m[1]);
    }
    if (code !== 0) failed.push(name);
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
if (dir) await rm(dir, { recursive: true, force: true });
console.log(`# files ${files.length}, ${concurrency} at a time${failed.length ? `; failed: ${failed.join(', ')}` : ''}`);
for (const [k, v] of Object.entries(totals)) console.log(`# ${k} ${v}`);
console.log(`# duration_ms ${Date.now() - started}`);
process.exit(failed.length || stopping ? 1 : 0);
