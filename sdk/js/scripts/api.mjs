// Writes API.md, the SDK's API reference, from src/index.d.ts: each
// exported declaration with its doc comment, grouped as the file groups
// them. test/types.test.js fails when API.md is not what this writes, so
// the reference cannot drift from the types (run `npm run api`).
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** Top-level declarations of a .d.ts: {name, kind, doc, code}. */
function declarations(dts) {
  const lines = dts.split('\n');
  const out = [];
  let doc = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('/**')) {
      doc = [];
      for (; i < lines.length; i++) {
        doc.push(lines[i]);
        if (lines[i].includes('*/')) break;
      }
      continue;
    }
    const m = line.match(/^export (?:declare )?(class|interface|type|const|function) (\w+)/);
    if (!m) {
      if (line.trim() === '' || line.startsWith('//')) doc = [];
      continue;
    }
    const code = [line];
    // A block runs to its closing brace at column 0; a one-liner ends with ';'.
    if (line.trimEnd().endsWith('{')) {
      for (i++; i < lines.length; i++) {
        code.push(lines[i]);
        if (/^}/.test(lines[i])) break;
      }
    } else {
      while (!/[;}]$/.test(code.at(-1).trimEnd()) && i + 1 < lines.length) code.push(lines[++i]);
    }
    out.push({ kind: m[1], name: m[2], doc: docText(doc), code: code.join('\n') });
    doc = [];
  }
  return out;
}

function docText(doc) {
  return doc
    .map((l) => l.replace(/^\s*\/\*\*\s?|\s*\*\/\s*$|^\s*\*\s?/g, ''))
    .join('\n')
    .trim();
}

const sections = [
  ['Session', ['Session', 'SessionOptions', 'SessionStateName', 'SessionState', 'StateChange', 'IncomingMessage', 'DigestChallenge', 'DigestAuthorization', 'Clock', 'Logger']],
  ['Calls', ['Call', 'CallOptions', 'CallStateName', 'CallState', 'CallStateChange', 'TransferRequest']],
  ['Extension headers', ['ExtensionHeaders', 'HeaderOptions', 'extensionHeaders', 'extensionsOf', 'MAX_EXTENSION_HEADERS']],
  ['Presence and message summaries', ['Subscription', 'PresenceStatus', 'MessageSummary', 'MessageCounts', 'parseMessageSummary', 'parseCounts']],
  ['Errors', ['JsonRtcError', 'ErrorCode', 'reasonOf']],
];

/** API.md's text for the declarations file dts. */
export function apiMarkdown(dts) {
  const decls = declarations(dts);
  const byName = new Map(decls.map((d) => [d.name, d]));
  const placed = new Set(sections.flatMap(([, names]) => names));
  const rest = decls.filter((d) => !placed.has(d.name)).map((d) => d.name);
  let md = '# @jsonrtc/sdk API reference\n\n';
  md += 'Generated from `src/index.d.ts` by `npm run api` (do not edit by hand).\n';
  md += 'Usage and examples: [README.md](README.md); the wire protocol: `docs/protocol.md`.\n';
  for (const [title, names] of [...sections, ['Building blocks (reliability, SDP helpers)', rest]]) {
    md += `\n## ${title}\n`;
    for (const name of names) {
      const d = byName.get(name);
      if (!d) throw new Error(`API.md: ${name} is not declared in index.d.ts`);
      md += `\n### ${d.name}\n\n`;
      if (d.doc) md += `${d.doc}\n\n`;
      md += '```ts\n' + d.code + '\n```\n';
    }
  }
  return md;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = new URL('..', import.meta.url);
  const md = apiMarkdown(await readFile(new URL('src/index.d.ts', root), 'utf8'));
  await writeFile(new URL('API.md', root), md);
  console.log('sdk/js/API.md written');
}
