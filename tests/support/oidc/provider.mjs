#!/usr/bin/env node
// A real OpenID Provider for regstack-rs end-to-end OAuth tests.
//
// Why this exists: our OAuth/OIDC client code must be tested against a
// provider we did not write. This wraps panva's `oidc-provider` (OpenID
// Certified) with only what tests need, all through its documented API:
//
//   node provider.mjs [--port N]      (0 or absent: the OS picks a port)
//
// Once listening it prints one line `LISTENING <port>` to stdout; every
// log line goes to stderr. SIGTERM or SIGINT closes it cleanly (exit 0).
//
// - Issuer `http://127.0.0.1:<port>` (no trailing slash); discovery at
//   /.well-known/openid-configuration. Provider cookies are named `oidcp_*`
//   so they never collide with the app's (cookies ignore ports).
// - Clients are registered at run time, one per test app (whose callback
//   URL has a random port):
//     POST /__test/clients
//     {"redirect_uris": ["http://127.0.0.1:P/cb"],          (required)
//      "client_id": "...", "client_secret": "...",           (optional: random)
//      "token_endpoint_auth_method": "client_secret_basic"}  (or _post)
//   answers 201 {"client_id", "client_secret", ...}. Registering an existing
//   client_id replaces it. Clients are confidential, code flow only, scopes
//   `openid email profile`; PKCE (S256, the only method) is required.
// - The user of each flow comes from the authorization request's
//   `login_hint`, either a JSON object
//     {"sub": "u1", "email": "u1@example.test", "email_verified": false,
//      "name": "U One", "tamper": "wrong-nonce"}
//   or `key=value` pairs separated by `;`
//     sub=u1;email=u1@example.test;email_verified=false;tamper=wrong-nonce
//   Only `sub` is required. `email_verified` is kept exactly as given in
//   the JSON form (true, false, "true", or absent); in the pair form
//   `true`/`false` are booleans, `"true"`/`"false"` (with the quotes) are
//   strings, and `absent` (or leaving it out) omits the claim. The latest
//   flow's claims win for a given `sub`.
// - Interactions are headless: GET /interaction/<uid> logs the hinted user
//   in and grants the requested scopes at once, then redirects back to the
//   provider, which redirects to the client's redirect_uri. Every
//   authorization request goes through this (no silent re-use of a
//   session), so the hint always decides the user; `prompt=none` therefore
//   always answers error=login_required.
// - `tamper` picks a failure for negative tests (see TAMPER_MODES below):
//   `access-denied` answers the redirect_uri with error=access_denied;
//   every other mode rewrites the ID token in the token endpoint's
//   response for that flow's code.
// - GET /__test/health answers 200 {"ok": true, "issuer": "..."}.
//
// State is in memory only; signing keys are made afresh at each start.

import { randomBytes, randomUUID } from 'node:crypto';
import * as http from 'node:http';

import {
  CompactSign, exportJWK, generateKeyPair,
} from 'jose';
import Provider, { interactionPolicy } from 'oidc-provider';

const log = (...parts) => console.error(new Date().toISOString(), 'oidc-provider:', ...parts);

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const args = { port: 0 };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === '--port') {
      args.port = Number(argv[i += 1]);
    } else if (a.startsWith('--port=')) {
      args.port = Number(a.slice('--port='.length));
    } else if (a === '--help' || a === '-h') {
      console.error('usage: node provider.mjs [--port N]');
      process.exit(0);
    } else {
      console.error(`provider.mjs: unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    console.error('provider.mjs: --port must be 0..65535');
    process.exit(2);
  }
  return args;
}

// ------------------------------------------------------------------ storage

// oidc-provider's own in-memory adapter is an LRU of 1,000 entries shared
// by every model, so a long test run could evict registered clients. This
// one keeps everything until it expires.
const store = new Map(); // `${model}:${id}` -> { payload, expiresAt }
const sessionByUid = new Map(); // session uid -> session id
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);

function live(key) {
  const entry = store.get(key);
  if (entry && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry;
}

class TestAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
    if (this.model === 'Session' && payload.uid) {
      sessionByUid.set(payload.uid, id);
    }
  }

  async find(id) {
    return live(this.key(id))?.payload;
  }

  async findByUid(uid) {
    const id = sessionByUid.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const entry = live(this.key(id));
    if (entry) {
      entry.payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of store) {
      if (GRANTABLE.has(key.slice(0, key.indexOf(':'))) && payload.grantId === grantId) {
        store.delete(key);
      }
    }
  }
}

setInterval(() => {
  const now = Date.now();
  for (const [key, { payload, expiresAt }] of store) {
    if (expiresAt <= now) {
      store.delete(key);
      if (key.startsWith('Session:') && payload.uid) sessionByUid.delete(payload.uid);
    }
  }
}, 60_000).unref();

// ----------------------------------------------------------- users, flows

const accounts = new Map(); // sub -> claims (without sub)
const tamperByGrant = new Map(); // grantId -> tamper mode

const TAMPER_MODES = new Set([
  'none',
  'access-denied', // error=access_denied to the redirect_uri instead of a code
  'bad-signature', // one bit of the ID token's signature flipped
  'wrong-nonce', // nonce changed, re-signed with the real key
  'no-nonce', // nonce removed, re-signed with the real key
  'wrong-aud', // aud is another client, re-signed with the real key
  'wrong-iss', // iss is another issuer, re-signed with the real key
  'expired', // exp (and iat) in the past, re-signed with the real key
  'foreign-key', // signed by a different key under the real key's kid
  'unknown-kid', // signed by a key whose kid the JWKS never lists
  'unknown-kid-published', // a new key and kid, added to the JWKS as the token is issued
  'alg-none', // header alg "none", empty signature
  'hs256-client-secret', // HS256 with the client's secret as the key
]);

class HintError extends Error {}

function parseEmailVerified(raw) {
  switch (raw) {
    case 'true': return true;
    case 'false': return false;
    case '"true"': return 'true';
    case '"false"': return 'false';
    case 'absent': case '': return undefined;
    default: throw new HintError(`email_verified=${raw}: use true, false, "true", "false" or absent`);
  }
}

// The login hint as a user: {sub, email?, email_verified?, name?, tamper}.
function parseHint(hint) {
  if (typeof hint !== 'string' || hint.trim() === '') {
    throw new HintError('login_hint is required: a JSON object or sub=...;email=...;email_verified=...;name=...;tamper=...');
  }
  let fields;
  if (hint.trim().startsWith('{')) {
    try {
      fields = JSON.parse(hint);
    } catch (e) {
      throw new HintError(`login_hint is not valid JSON: ${e.message}`);
    }
  } else {
    fields = {};
    for (const pair of hint.split(';')) {
      if (pair.trim() === '') continue;
      const eq = pair.indexOf('=');
      if (eq < 0) throw new HintError(`login_hint pair without "=": ${pair}`);
      const key = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      fields[key] = key === 'email_verified' ? parseEmailVerified(value) : value;
    }
  }
  const known = new Set(['sub', 'email', 'email_verified', 'name', 'tamper']);
  for (const key of Object.keys(fields)) {
    if (!known.has(key)) throw new HintError(`login_hint: unknown field ${key}`);
  }
  if (typeof fields.sub !== 'string' || fields.sub === '') {
    throw new HintError('login_hint: sub is required');
  }
  const tamper = fields.tamper ?? 'none';
  if (!TAMPER_MODES.has(tamper)) {
    throw new HintError(`login_hint: unknown tamper mode ${tamper}; known: ${[...TAMPER_MODES].join(', ')}`);
  }
  const claims = {};
  if (fields.email !== undefined) claims.email = fields.email;
  if (fields.email_verified !== undefined) claims.email_verified = fields.email_verified;
  if (fields.name !== undefined) claims.name = fields.name;
  return { sub: fields.sub, claims, tamper };
}

// ------------------------------------------------------------------- keys

const b64 = (value) => Buffer.from(value).toString('base64url');
const fromB64Json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

async function rsaKey(kid) {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { privateKey, jwk, publicJwk };
}

const signingKey = await rsaKey(`op-${randomUUID()}`);
// Same kid as the real key, different key material.
const foreignKey = await rsaKey(signingKey.jwk.kid);
// A kid that no JWKS of ours ever lists.
const unlistedKey = await rsaKey(`unlisted-${randomUUID()}`);
// Public keys added to the JWKS at run time (`unknown-kid-published`).
const publishedLate = [];

async function sign(header, payload, key) {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .sign(key);
}

// The ID token `idToken` altered as `mode` says.
async function tamperIdToken(mode, idToken, client) {
  const [h, p, s] = idToken.split('.');
  const header = fromB64Json(h);
  const payload = fromB64Json(p);
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'bad-signature': {
      const sig = Buffer.from(s, 'base64url');
      sig[0] ^= 0x01;
      return `${h}.${p}.${sig.toString('base64url')}`;
    }
    case 'wrong-nonce':
      return sign(header, { ...payload, nonce: `not-${payload.nonce ?? 'the-nonce'}` }, signingKey.privateKey);
    case 'no-nonce': {
      const { nonce, ...rest } = payload;
      return sign(header, rest, signingKey.privateKey);
    }
    case 'wrong-aud':
      return sign(header, { ...payload, aud: `not-${client.clientId}` }, signingKey.privateKey);
    case 'wrong-iss':
      return sign(header, { ...payload, iss: 'http://attacker.invalid' }, signingKey.privateKey);
    case 'expired':
      return sign(header, { ...payload, iat: now - 7200, exp: now - 3600 }, signingKey.privateKey);
    case 'foreign-key':
      return sign(header, payload, foreignKey.privateKey);
    case 'unknown-kid':
      return sign({ ...header, kid: unlistedKey.jwk.kid }, payload, unlistedKey.privateKey);
    case 'unknown-kid-published': {
      const key = await rsaKey(`late-${randomUUID()}`);
      publishedLate.push(key.publicJwk);
      return sign({ ...header, kid: key.jwk.kid }, payload, key.privateKey);
    }
    case 'alg-none': {
      const { kid, ...rest } = header;
      return `${b64(JSON.stringify({ ...rest, alg: 'none' }))}.${p}.`;
    }
    case 'hs256-client-secret': {
      const { kid, ...rest } = header;
      return sign({ ...rest, alg: 'HS256' }, payload, new TextEncoder().encode(client.clientSecret));
    }
    default:
      throw new Error(`no ID token tampering for mode ${mode}`);
  }
}

// --------------------------------------------------------------- provider

const { port: wantedPort } = parseArgs(process.argv.slice(2));

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const server = http.createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(wantedPort, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

// Every authorization request logs in afresh, so the login hint, not a
// session cookie left from an earlier flow, decides the user.
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'test_harness_fresh_login',
  'the test harness logs in afresh on every authorization request',
  (ctx) => (ctx.oidc.result?.login
    ? interactionPolicy.Check.NO_NEED_TO_PROMPT
    : interactionPolicy.Check.REQUEST_PROMPT),
));

const provider = new Provider(issuer, {
  adapter: TestAdapter,
  jwks: { keys: [signingKey.jwk] },
  cookies: {
    names: { session: 'oidcp_session', interaction: 'oidcp_interaction', resume: 'oidcp_resume' },
    keys: [randomBytes(32).toString('base64url')],
  },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Scope claims go into the ID token of the code flow too, as most
  // providers do; the app reads email and email_verified from it.
  conformIdTokenClaims: false,
  responseTypes: ['code'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
  },
  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  },
  interactions: {
    policy,
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  findAccount: async (_ctx, sub) => {
    const claims = accounts.get(sub);
    if (!claims) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...claims }) };
  },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// Token responses of tampered flows get their ID token rewritten; the JWKS
// gains the keys published late.
provider.use(async (ctx, next) => {
  await next();
  const route = ctx.oidc?.route;
  if (route === 'token' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object'
    && typeof ctx.body.id_token === 'string') {
    const grantId = ctx.oidc.entities?.AuthorizationCode?.grantId;
    const mode = grantId === undefined ? undefined : tamperByGrant.get(grantId);
    if (mode && mode !== 'none') {
      ctx.body = { ...ctx.body, id_token: await tamperIdToken(mode, ctx.body.id_token, ctx.oidc.client) };
      log(`token: ID token tampered (${mode}) for grant ${grantId}`);
    }
  } else if (route === 'jwks' && ctx.status === 200 && publishedLate.length > 0
    && ctx.body && Array.isArray(ctx.body.keys)) {
    ctx.body = { keys: [...ctx.body.keys, ...publishedLate] };
  }
});

// ------------------------------------------------------------- handlers

function send(res, status, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json');
  res.setHeader('Cache-Control', 'no-store');
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new HintError('request body over 64 KiB');
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  } catch (e) {
    throw new HintError(`body is not JSON: ${e.message}`);
  }
}

async function registerClient(req, res) {
  const body = await readJson(req);
  if (!Array.isArray(body.redirect_uris) || body.redirect_uris.length === 0) {
    send(res, 400, { error: 'invalid_client_metadata', error_description: 'redirect_uris (a non-empty array) is required' });
    return;
  }
  const metadata = {
    client_id: body.client_id ?? `client-${randomUUID()}`,
    client_secret: body.client_secret ?? randomBytes(24).toString('base64url'),
    redirect_uris: body.redirect_uris,
    token_endpoint_auth_method: body.token_endpoint_auth_method ?? 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    scope: 'openid email profile',
  };
  try {
    await provider.Client.validate(metadata);
  } catch (e) {
    send(res, 400, { error: e.error ?? 'invalid_client_metadata', error_description: e.error_description ?? e.message });
    return;
  }
  await new TestAdapter('Client').upsert(metadata.client_id, metadata);
  log(`registered client ${metadata.client_id} for ${metadata.redirect_uris.join(' ')}`);
  send(res, 201, metadata);
}

// GET /interaction/<uid>: logs the hinted user in and consents at once.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;

  if (prompt.name === 'login') {
    let user;
    try {
      user = parseHint(params.login_hint);
    } catch (e) {
      if (!(e instanceof HintError)) throw e;
      send(res, 400, `test OpenID Provider: ${e.message}\n`);
      return;
    }
    if (user.tamper === 'access-denied') {
      log(`interaction ${details.uid}: access denied (tamper) for ${user.sub}`);
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'the test user declined (tamper=access-denied)',
      }, { mergeWithLastSubmission: false });
      return;
    }
    accounts.set(user.sub, user.claims);
    const grant = new provider.Grant({ accountId: user.sub, clientId: params.client_id });
    grant.addOIDCScope(String(params.scope ?? 'openid'));
    if (params.claims) {
      const requested = JSON.parse(params.claims);
      grant.addOIDCClaims([
        ...Object.keys(requested.id_token ?? {}),
        ...Object.keys(requested.userinfo ?? {}),
      ]);
    }
    const grantId = await grant.save();
    tamperByGrant.set(grantId, user.tamper);
    log(`interaction ${details.uid}: ${user.sub} logged in to ${params.client_id} (tamper ${user.tamper})`);
    await provider.interactionFinished(req, res, {
      login: { accountId: user.sub },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }

  send(res, 400, `test OpenID Provider: unexpected prompt ${prompt.name}\n`);
}

const providerCallback = provider.callback();

handler = async (req, res) => {
  const started = Date.now();
  const path = (req.url ?? '/').split('?')[0];
  res.on('finish', () => log(`${req.method} ${path} -> ${res.statusCode} (${Date.now() - started} ms)`));
  try {
    if (path === '/__test/health' && req.method === 'GET') {
      send(res, 200, { ok: true, issuer });
    } else if (path === '/__test/clients' && req.method === 'POST') {
      await registerClient(req, res);
    } else if (path.startsWith('/interaction/') && req.method === 'GET') {
      await interaction(req, res);
    } else {
      providerCallback(req, res);
    }
  } catch (e) {
    if (e instanceof HintError) {
      send(res, 400, { error: 'invalid_request', error_description: e.message });
      return;
    }
    log(`error on ${req.method} ${path}:`, e);
    if (!res.headersSent) {
      send(res, e.statusCode ?? 500, { error: e.error ?? 'server_error', error_description: e.error_description ?? e.message });
    } else {
      res.end();
    }
  }
};

function shutdown(signal) {
  log(`${signal}: closing`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

log(`issuer ${issuer}`);
process.stdout.write(`LISTENING ${port}\n`);
