// Deskroute runs its TypeScript sources with Node's own type stripping, which needs Node.js 24.
// Older versions fail far from the cause (ERR_UNKNOWN_FILE_EXTENSION, one EBADENGINE warning
// among many), so `npm ci`, `npm start` and `npm test` run this first (preinstall, prestart,
// pretest). Plain ES5 CommonJS on purpose: it must run, and say so, on any old Node.
'use strict';

var found = process.version;
var major = parseInt(found.replace(/^v/, '').split('.')[0], 10);

if (!(major >= 24)) {
  // biome-ignore lint/style/useTemplate: ES5 on purpose, so that any old Node can parse this file
  process.stderr.write('Deskroute needs Node.js 24 or newer, found ' + found + '\n');
  process.exit(1);
}
