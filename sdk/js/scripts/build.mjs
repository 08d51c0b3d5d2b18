// Checks that every module of the SDK parses (node --check). The gateway
// serves src/ as it is (Go package sdkjs embeds it), so there is nothing
// to copy or bundle: the sources are the build.
import { readdir } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, '..', 'src');
const files = (await readdir(src)).filter((f) => f.endsWith('.js')).sort();
for (const f of files) {
  execFileSync(process.execPath, ['--check', join(src, f)], { stdio: 'inherit' });
}
console.log(`sdk/js: ${files.length} modules parse; served from src/ by the gateway`);
