// Runs the browser tests (npm run test:e2e): builds jsonrtcd once for the
// whole run and hands it to every test file as JSONRTCD_BIN, so that the
// gateways the files start (some twenty) do not each link their own; then
// node's test runner on e2e/ (or on the files given as arguments).
//
// E2E_CONCURRENCY sets how many test files run at once (default 1): each
// file has its own gateways, ports (reservePort), data directories and
// browser, so they share nothing but the CPU.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..', '..');

// A run stopped (a CI timeout, ^C) stops what it runs: node's test
// runner ends its files, and they their gateways and browsers.
const children = new Set();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of children) c.kill(sig);
  });
}

function run(cmd, args, opts) {
  return new Promise((res) => {
    const p = spawn(cmd, args, { stdio: 'inherit', ...opts });
    children.add(p);
    p.on('exit', () => children.delete(p));
    p.on('error', (err) => {
      console.error(`${cmd}: ${err.message}`);
      res(1);
    });
    p.on('exit', (code, sig) => res(code ?? (sig ? 1 : 0)));
  });
}

const env = { ...process.env };
let dir = null;
if (!env.JSONRTCD_BIN) {
  dir = await mkdtemp(join(tmpdir(), 'jsonrtc-e2e-bin-'));
  env.JSONRTCD_BIN = join(dir, 'jsonrtcd');
  const started = Date.now();
  const code = await run('go', ['build', '-o', env.JSONRTCD_BIN, './cmd/jsonrtcd'], { cwd: repoRoot });
  if (code !== 0) {
    await rm(dir, { recursive: true, force: true });
    console.error(`go build ./cmd/jsonrtcd: exit ${code}`);
    process.exit(code);
  }
  console.log(`# jsonrtcd built once for the run in ${Date.now() - started} ms`);
}
const concurrency = env.E2E_CONCURRENCY || '1';
// Arguments go to node --test: options (--test-reporter=spec,
// --test-name-pattern=...) and files; without files, all of e2e/.
const args = process.argv.slice(2);
if (!args.some((a) => !a.startsWith('-'))) args.push(here);
const code = await run(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...args], { env });
if (dir) await rm(dir, { recursive: true, force: true });
process.exit(code);
