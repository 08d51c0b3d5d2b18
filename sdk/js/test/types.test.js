// src/index.d.ts against the code: every export of src/index.js is
// declared and every declaration exported, and the public methods and
// getters of the classes match their declarations both ways. (tsc checks
// that the declarations are coherent and usable: npm run typecheck.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import * as sdk from '../src/index.js';
import { apiMarkdown } from '../scripts/api.mjs';

const dts = await readFile(new URL('../src/index.d.ts', import.meta.url), 'utf8');

test('index.d.ts declares exactly what index.js exports', () => {
  const declared = new Set([...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]));
  assert.deepEqual([...declared].sort(), Object.keys(sdk).sort());
});

/** The members declared in class name's body: methods, and properties (readonly or not). */
function declaredMembers(name) {
  const start = dts.search(new RegExp(`^export declare class ${name}\\b`, 'm'));
  assert.ok(start >= 0, `class ${name} declared`);
  const body = dts.slice(start, dts.indexOf('\n}', start));
  const methods = new Set();
  const props = new Set();
  for (const line of body.split('\n').slice(1)) {
    const m = line.match(/^ {2}(?:static )?(?:readonly )?(\w+)(\??)(\(|<|:)/);
    if (!m) continue;
    (m[3] === ':' ? props : methods).add(m[1]);
  }
  return { methods, props };
}

/**
 * Public in JavaScript but not API: Session rebuilds calls and
 * subscriptions with them after a page reload.
 */
const internal = { Call: ['restore'], Subscription: ['restore'] };

for (const name of ['Session', 'Call', 'Subscription', 'Reliability', 'Keepalive', 'Backoff', 'Emitter']) {
  test(`class ${name}: public methods and getters match their declarations`, () => {
    const { methods, props } = declaredMembers(name);
    const cls = sdk[name];
    const have = new Set();
    const getters = new Set();
    for (const target of [cls.prototype, cls]) {
      for (const key of Object.getOwnPropertyNames(target)) {
        if (key.startsWith('_') || ['constructor', 'prototype', 'length', 'name'].includes(key) || internal[name]?.includes(key)) continue;
        const d = Object.getOwnPropertyDescriptor(target, key);
        if (typeof d.value === 'function') have.add(key);
        else if (d.get) getters.add(key);
      }
    }
    const emitter = new Set(Object.getOwnPropertyNames(sdk.Emitter.prototype));
    // 'on' is redeclared with typed overloads in subclasses.
    const own = [...methods].filter((m) => name === 'Emitter' || m !== 'on');
    assert.deepEqual(own.filter((m) => !have.has(m) && !emitter.has(m)), [], `declared but missing in the code`);
    assert.deepEqual([...have].filter((m) => !methods.has(m)), [], `in the code but not declared`);
    assert.deepEqual([...getters].filter((g) => !props.has(g)), [], `getters not declared`);
  });
}

test('API.md is what npm run api writes from index.d.ts', async () => {
  const md = await readFile(new URL('../API.md', import.meta.url), 'utf8');
  assert.ok(md === apiMarkdown(dts), 'API.md is stale: run npm run api in sdk/js');
});
