'use strict';

// The package itself: what WeChat's "构建 npm" needs (CommonJS, ES2017 syntax, no dependencies),
// package.json, and the options documented with their defaults in index.d.ts and README.md.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const ROOT = path.join(__dirname, '..');
const read = (name) => fs.readFileSync(path.join(ROOT, name), 'utf8');
const pkg = JSON.parse(read('package.json'));
const lib = require('../index.js');

/**
 * The source with comments, strings, template literals and regular-expression literals blanked;
 * the regular-expression literals themselves (with flags) are pushed onto `regexes`.
 */
function code(source, regexes = []) {
  let out = '';
  let i = 0;
  let last = ''; // last significant character, to tell a regex literal from a division
  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      i = source.indexOf('*/', i + 2) + 2;
      out += ' ';
    } else if (c === '"' || c === "'" || c === '`') {
      i++;
      while (i < source.length && source[i] !== c) i += source[i] === '\\' ? 2 : 1;
      i++;
      out += '""';
      last = '"';
    } else if (c === '/' && (last === '' || '(,=:[!&|?{};+-*%<>~^'.includes(last) || /\breturn\s*$/.test(out))) {
      const startRegex = i;
      i++;
      let inClass = false;
      while (i < source.length && (source[i] !== '/' || inClass)) {
        if (source[i] === '\\') i++;
        else if (source[i] === '[') inClass = true;
        else if (source[i] === ']') inClass = false;
        i++;
      }
      i++;
      while (/[a-z]/.test(source[i] || '')) i++;
      regexes.push(source.slice(startRegex, i));
      out += '/x/';
      last = '/';
    } else {
      out += c;
      if (!/\s/.test(c)) last = c;
      i++;
    }
  }
  return out;
}

test('index.js: CommonJS with ES2017 syntax only', () => {
  const regexes = [];
  const src = code(read('index.js'), regexes);
  const forbidden = [
    [/\?\.(?!\d)/, 'optional chaining ?.'],
    [/\?\?/, 'nullish coalescing ??'],
    [/\.\.\./, 'spread / rest (object spread is ES2018)'],
    [/\bclass\s/, 'class (and class fields)'],
    [/#[A-Za-z_]/, 'private names'],
    [/\basync\b|\bawait\b/, 'async / await (kept out for old base libraries)'],
    [/\.finally\s*\(/, 'Promise.prototype.finally (ES2018)'],
    [/^\s*(import|export)\b/m, 'ES modules'],
    [/\brequire\s*\(/, 'require: the package has no dependencies'],
    [/\bBigInt\b|\d+n\b/, 'BigInt'],
  ];
  for (const [pattern, what] of forbidden) {
    const m = pattern.exec(src);
    assert.equal(m, null, `${what} in index.js near: ${m && src.slice(Math.max(0, m.index - 40), m.index + 40)}`);
  }
  // No regular-expression features past ES2017 (look-behind, named groups, the s flag).
  assert.ok(regexes.length >= 3, `regular expressions found: ${regexes}`);
  for (const r of regexes) {
    assert.doesNotMatch(r, /\(\?<|\\p\{/, `look-behind, named group or \\p{} in ${r}`);
    assert.match(r, /\/[gimuy]*$/, `flags past ES2017 in ${r}`);
  }
  assert.match(read('index.js'), /module\.exports\s*=/);
  assert.doesNotThrow(() => new vm.Script(read('index.js'), { filename: 'index.js' }));
});

test('index.js runs in a bare CommonJS sandbox (no Node globals) and exports instrument', () => {
  const module = { exports: {} };
  const sandbox = { module, exports: module.exports, Promise, Object, Array, JSON, Math, Date, Number, String, Uint8Array, ArrayBuffer, isFinite, parseInt };
  vm.runInNewContext(read('index.js'), sandbox, { filename: 'index.js' });
  assert.equal(typeof module.exports.instrument, 'function');
  const cloud = { callContainer: (o) => Promise.resolve({ statusCode: 200, header: {}, o }) };
  const client = module.exports.instrument(cloud, { service: 'orders' });
  return client.callContainer({ path: '/a', header: { 'X-WX-SERVICE': 'orders' } }).then((res) => {
    assert.equal(res.statusCode, 200);
    assert.match(res.o.header.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });
});

test('package.json: name, main, types, files, license, engines, no dependencies', () => {
  assert.equal(pkg.name, 'wxcloudrun-telemetry-miniprogram');
  assert.equal(pkg.main, 'index.js');
  assert.equal(pkg.types, 'index.d.ts');
  assert.equal(pkg.license, 'MIT OR Apache-2.0');
  assert.ok(pkg.engines && typeof pkg.engines.node === 'string');
  for (const f of ['index.js', 'index.d.ts', 'README.md']) {
    assert.ok(pkg.files.includes(f), f);
    assert.ok(fs.existsSync(path.join(ROOT, f)), f);
  }
  assert.ok(!pkg.files.some((f) => f.startsWith('test') || f.startsWith('bench')));
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies']) {
    assert.equal(pkg[field], undefined, field);
  }
  assert.equal(lib.VERSION, pkg.version);
  assert.equal(lib.SDK, `${pkg.name}/${pkg.version}`);
});

test('every option is documented with its default in index.d.ts and README.md', () => {
  const dts = read('index.d.ts');
  const readme = read('README.md');
  const defaults = {
    service: 'unset',
    env: 'unset',
    beaconPath: "'/_wxtelemetry/v1/client'",
    sampleRate: '1',
    maxQueue: '64',
    flushIntervalMs: '10000',
    flushAfterSuccessMs: '60000',
    storageKey: "'wxcloudrun-telemetry-miniprogram:v1'",
    enabled: 'true',
  };
  assert.deepEqual(Object.keys(lib.DEFAULTS).sort(), Object.keys(defaults).sort());
  for (const [name, def] of Object.entries(defaults)) {
    const doc = new RegExp(`/\\*\\*[^]*?\\*/\\s*${name}\\?:`).exec(dts);
    assert.ok(doc, `${name} has a doc comment in index.d.ts`);
    const comment = doc[0].slice(doc[0].lastIndexOf('/**')).replace(/`/g, '').replace(/\s*\n\s*\*\s*/g, ' ');
    assert.ok(comment.includes(`Default ${def}`) || comment.includes(`Default: ${def}`), `${name}: ${comment}`);
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${name}\``));
    assert.ok(row, `${name} has a row in the README's options table`);
    const plain = def.replace(/'/g, '');
    assert.ok(row.includes(plain), `${name}: README row shows the default ${plain}: ${row}`);
  }
  for (const fact of ['wxcloudrun-telemetry-miniprogram:v1', '/_wxtelemetry/v1/client', '"dropped"', '16 KiB', 'Math.random']) {
    assert.ok(readme.includes(fact), `README mentions ${fact}`);
  }
});

test('the README\'s protocol example is valid JSON with the fields in protocol order', () => {
  const readme = read('README.md');
  const block = /```json\n([^]*?)```/.exec(readme);
  assert.ok(block, 'a json block');
  const body = JSON.parse(block[1]);
  assert.deepEqual(Object.keys(body), ['v', 'sdk', 'dropped', 'calls']);
  assert.deepEqual(Object.keys(body.calls[0]), [
    'trace_id', 'span_id', 'method', 'duration_ms', 'outcome', 'status', 'err_code', 'server_ms', 'ts',
  ]);
  assert.equal(body.sdk, lib.SDK);
});
