// Mock OpenID Connect provider of tests/chart/test_oidc.py: oauth2-mock-server (ci/install-npm-tools.sh) on 127.0.0.1.
// Its /authorize logs the user in at once (no form); every token it signs carries the claims of the user in USER_FILE,
// JSON {"email": ..., "groups": [...]} (read at each signing, so a test can log in as another user).
// Usage: node tests/oidc_provider.mjs MODULE_DIR PORT USER_FILE   (MODULE_DIR: .tools/npm/oauth2-mock-server)
import { webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [moduleDir, port, userFile] = process.argv.slice(2);
globalThis.crypto ??= webcrypto; // jose signs with the global WebCrypto, which Debian 12's Node 18 has only behind a flag
const { OAuth2Server, Events } = await import(
  pathToFileURL(join(moduleDir, 'node_modules', 'oauth2-mock-server', 'dist', 'index.mjs')).href
);

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
server.service.on(Events.BeforeTokenSigning, (token) => {
  const { email, groups } = JSON.parse(readFileSync(userFile, 'utf8'));
  Object.assign(token.payload, { sub: email, email, email_verified: true, groups });
});
await server.start(Number(port), '127.0.0.1');
server.issuer.url = `http://127.0.0.1:${port}`; // the library says localhost for 127.0.0.1; the proxy checks it
console.log(`mock OIDC provider: issuer ${server.issuer.url}`);
