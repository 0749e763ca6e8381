/**
 * Runs before anything else of `npm start` (`node --import ./local/check-node.mjs`, and the first
 * import of local/start.ts): plain JavaScript with no imports beyond Node's own, so that an old
 * Node or a checkout without its dependencies gets one line saying what to do instead of a trace
 * from deep inside the loader. Node 22.18 is the first 22.x that runs TypeScript files as they
 * are (type stripping on by default); `npm ci` installs such a Node for the npm scripts.
 */
import { existsSync } from 'node:fs';

/** True when `version` ("22.18.0") can run keygate's TypeScript sources directly. */
export function nodeIsRecentEnough(version) {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major >= 24 || (major === 23 && minor >= 6) || (major === 22 && minor >= 18);
}

function fail(message) {
  console.error(message);
  process.exit(1);
}

if (!nodeIsRecentEnough(process.versions.node)) {
  fail(
    `keygate needs Node.js 22.18 or later (this is Node ${process.version}): run \`npm ci\` (it installs ` +
      'Node 22 for the npm scripts) and start with `npm start`, or install Node 22 (e.g. `nvm install 22`)',
  );
}
if (!existsSync(new URL('../node_modules/@aws-sdk/client-dynamodb/package.json', import.meta.url))) {
  fail("keygate's dependencies are not installed: run `npm ci` in the keygate folder, then `npm start`");
}
