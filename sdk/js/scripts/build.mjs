// Copies the SDK's ES modules into the demo page's embedded static dir
// (web/static/sdk/), which the Go package `web` serves under /sdk/. The
// copy is committed, so the gateway builds without npm. With --check it
// only reports whether the copy is current (exit 1 when stale).
import { readdir, readFile, writeFile, mkdir, rm } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, '..', 'src');
const dst = join(here, '..', '..', '..', 'web', 'static', 'sdk');
const check = process.argv.includes('--check');

const files = (await readdir(src)).filter((f) => f.endsWith('.js') || f.endsWith('.d.ts')).sort();
let stale = [];
if (!check) await mkdir(dst, { recursive: true });
const existing = await readdir(dst).catch(() => []);
for (const f of files) {
  const want = await readFile(join(src, f), 'utf8');
  const have = await readFile(join(dst, f), 'utf8').catch(() => null);
  if (have === want) continue;
  stale.push(f);
  if (!check) await writeFile(join(dst, f), want);
}
for (const f of existing) {
  if (files.includes(f)) continue;
  stale.push(f);
  if (!check) await rm(join(dst, f));
}
if (check) {
  if (stale.length) {
    console.error(`web/static/sdk is stale (${stale.join(', ')}): run npm run build`);
    process.exit(1);
  }
  console.log('web/static/sdk is current');
} else {
  console.log(`web/static/sdk: ${files.length} files${stale.length ? `, updated ${stale.join(', ')}` : ', unchanged'}`);
}
