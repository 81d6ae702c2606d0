// A real OpenID Connect provider for oidc-guard's tests and `make demo`.
//
// It is the certified npm `oidc-provider` (9.x) with the few policies a test needs:
// - no login UI: the interaction handler logs a test user in at once (which user: the
//   interaction URL's `user` query parameter, else the authorization request's `login_hint`,
//   else the default user) and grants consent, so a client with a cookie jar completes the code
//   flow by following redirects;
// - ID tokens carry the email/profile/groups claims (`conformIdTokenClaims: false`);
// - refresh tokens for every code grant of a client allowed the `refresh_token` grant, rotated on
//   use; short token lifetimes;
// - RP-initiated logout whose confirmation page is a one-field form (auto-submitted in a browser);
//   back-channel logout to any URL, loopback included (the stock SSRF guard is turned off: this
//   server only ever runs in tests and demos);
// - counters of grants and logouts at GET /__test/stats (POST /__test/reset zeroes them) and one
//   log line per provider event on stdout.
//
// Run `node server.mjs --help` for the options; README.md has examples.

import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors as oidcErrors } from 'oidc-provider';

const HELP = `Usage: node server.mjs [options]

Options (each also as an environment variable; command line > environment > config file > default):
  --host ADDR              IDP_HOST          listen address (default 127.0.0.1)
  --port N                 IDP_PORT          listen port; 0 picks a free one (default 9090)
  --issuer URL             IDP_ISSUER        issuer (default http://HOST:PORT + issuer path)
  --issuer-path PATH       IDP_ISSUER_PATH   path of the default issuer, e.g. /idp (default none)
  --config FILE            IDP_CONFIG        JSON file: { clients, users, ttl, ... } (see README.md)
  --config-json JSON       IDP_CONFIG_JSON   the same JSON given inline (wins over --config)
  --clients JSON           IDP_CLIENTS       JSON array of client metadata (replaces the config's)
  --keys FILE              IDP_KEYS_FILE     private JWKS; created with fresh RSA/P-256/Ed25519
                                             keys when the file does not exist (default: fresh
                                             keys in memory at every start)
  --access-token-ttl S     IDP_ACCESS_TOKEN_TTL   seconds (default 60)
  --id-token-ttl S         IDP_ID_TOKEN_TTL       seconds (default 60)
  --refresh-token-ttl S    IDP_REFRESH_TOKEN_TTL  seconds (default 86400)
  --session-ttl S          IDP_SESSION_TTL        seconds (default 86400)
  --large-groups N         IDP_LARGE_GROUPS  groups of the user large@example.com (default 200)
  --extra-groups N         IDP_EXTRA_GROUPS  generated groups added to every user (default 0)
  --default-user U         IDP_DEFAULT_USER  user logged in when none is chosen (default alice)
  --login-page MODE        IDP_LOGIN_PAGE    auto (log in at once) | form (pick a user; demo)
  --logout-confirm MODE    IDP_LOGOUT_CONFIRM  auto (auto-submitted form) | manual (buttons)
  --no-pkce                IDP_PKCE_REQUIRED=0  do not require PKCE
  --no-rotate              IDP_ROTATE_REFRESH_TOKENS=0  keep refresh tokens on use
                           IDP_STRICT_CLIENT_AUTH=0  accept client_secret_basic and _post
                                             interchangeably (oidc-provider's own behaviour)
  --parent-pid PID         IDP_PARENT_PID    exit when this process is gone
  --proxy                  IDP_PROXY=1       trust X-Forwarded-* headers
  -h, --help
Convenience for a single client (make demo): IDP_CLIENT_ID, IDP_CLIENT_SECRET,
IDP_REDIRECT_URIS and IDP_POST_LOGOUT_REDIRECT_URIS (comma-separated).`;

// ---------------------------------------------------------------------------------------------
// Configuration

const { values: cli } = parseArgs({
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    issuer: { type: 'string' },
    'issuer-path': { type: 'string' },
    config: { type: 'string' },
    'config-json': { type: 'string' },
    clients: { type: 'string' },
    keys: { type: 'string' },
    'access-token-ttl': { type: 'string' },
    'id-token-ttl': { type: 'string' },
    'refresh-token-ttl': { type: 'string' },
    'session-ttl': { type: 'string' },
    'large-groups': { type: 'string' },
    'extra-groups': { type: 'string' },
    'default-user': { type: 'string' },
    'login-page': { type: 'string' },
    'logout-confirm': { type: 'string' },
    'no-pkce': { type: 'boolean' },
    'no-rotate': { type: 'boolean' },
    'parent-pid': { type: 'string' },
    proxy: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});

if (cli.help) {
  console.log(HELP);
  process.exit(0);
}

function fail(message) {
  console.error(`oidc-idp: ${message}`);
  process.exit(2);
}

const env = process.env;
const configPath = cli.config ?? env.IDP_CONFIG;
const configJson = cli['config-json'] ?? env.IDP_CONFIG_JSON;
let file = {};
if (configJson) {
  try {
    file = JSON.parse(configJson);
  } catch (err) {
    fail(`inline config: expected a JSON object, ${err.message}`);
  }
} else if (configPath) {
  try {
    file = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch (err) {
    fail(`cannot read config file ${configPath}: ${err.message}`);
  }
}

function pick(cliValue, envName, fileValue, fallback) {
  if (cliValue !== undefined) return cliValue;
  if (env[envName] !== undefined && env[envName] !== '') return env[envName];
  if (fileValue !== undefined) return fileValue;
  return fallback;
}

function int(name, value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) fail(`${name}: expected a non-negative integer, found ${JSON.stringify(value)}`);
  return n;
}

function flag(cliNegated, envName, fileValue, fallback) {
  if (cliNegated) return false;
  const v = env[envName];
  if (v !== undefined && v !== '') return !['0', 'false', 'no', 'off'].includes(v.toLowerCase());
  if (fileValue !== undefined) return Boolean(fileValue);
  return fallback;
}

const fileTtl = file.ttl ?? {};
const config = {
  host: pick(cli.host, 'IDP_HOST', file.host, '127.0.0.1'),
  port: int('port', pick(cli.port, 'IDP_PORT', file.port, 9090)),
  issuer: pick(cli.issuer, 'IDP_ISSUER', file.issuer, undefined),
  issuerPath: pick(cli['issuer-path'], 'IDP_ISSUER_PATH', file.issuerPath, ''),
  keysFile: pick(cli.keys, 'IDP_KEYS_FILE', file.keysFile, undefined),
  ttl: {
    AccessToken: int('access token ttl', pick(cli['access-token-ttl'], 'IDP_ACCESS_TOKEN_TTL', fileTtl.AccessToken, 60)),
    IdToken: int('id token ttl', pick(cli['id-token-ttl'], 'IDP_ID_TOKEN_TTL', fileTtl.IdToken, 60)),
    RefreshToken: int('refresh token ttl', pick(cli['refresh-token-ttl'], 'IDP_REFRESH_TOKEN_TTL', fileTtl.RefreshToken, 86400)),
    Session: int('session ttl', pick(cli['session-ttl'], 'IDP_SESSION_TTL', fileTtl.Session, 86400)),
    Grant: int('grant ttl', fileTtl.Grant ?? 86400),
    AuthorizationCode: int('authorization code ttl', fileTtl.AuthorizationCode ?? 60),
    Interaction: int('interaction ttl', fileTtl.Interaction ?? 600),
  },
  largeGroups: int('large groups', pick(cli['large-groups'], 'IDP_LARGE_GROUPS', file.largeGroups, 200)),
  extraGroups: int('extra groups', pick(cli['extra-groups'], 'IDP_EXTRA_GROUPS', file.extraGroups, 0)),
  defaultUser: pick(cli['default-user'], 'IDP_DEFAULT_USER', file.defaultUser, 'alice'),
  loginPage: pick(cli['login-page'], 'IDP_LOGIN_PAGE', file.loginPage, 'auto'),
  logoutConfirm: pick(cli['logout-confirm'], 'IDP_LOGOUT_CONFIRM', file.logoutConfirm, 'auto'),
  pkceRequired: flag(cli['no-pkce'], 'IDP_PKCE_REQUIRED', file.pkceRequired, true),
  rotateRefreshTokens: flag(cli['no-rotate'], 'IDP_ROTATE_REFRESH_TOKENS', file.rotateRefreshTokens, true),
  parentPid: pick(cli['parent-pid'], 'IDP_PARENT_PID', undefined, undefined),
  proxy: cli.proxy || flag(false, 'IDP_PROXY', file.proxy, false),
  resourceServers: file.resourceServers ?? {},
  strictClientAuth: flag(false, 'IDP_STRICT_CLIENT_AUTH', file.strictClientAuth, true),
};
if (!['auto', 'form'].includes(config.loginPage)) fail(`login page: expected auto or form, found ${config.loginPage}`);
if (!['auto', 'manual'].includes(config.logoutConfirm)) fail(`logout confirm: expected auto or manual, found ${config.logoutConfirm}`);

// Clients: --clients/IDP_CLIENTS, else the config file's, else one demo client (IDP_CLIENT_*).
function list(value) {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}
let clients;
const clientsJson = cli.clients ?? env.IDP_CLIENTS;
if (clientsJson) {
  try {
    clients = JSON.parse(clientsJson);
  } catch (err) {
    fail(`clients: expected a JSON array, ${err.message}`);
  }
} else if (Array.isArray(file.clients)) {
  clients = file.clients;
} else {
  clients = [{
    client_id: env.IDP_CLIENT_ID || 'oidc-guard',
    client_secret: env.IDP_CLIENT_SECRET || 'oidc-guard-demo-secret',
    redirect_uris: list(env.IDP_REDIRECT_URIS || 'http://127.0.0.1:8080/oauth2/callback,http://localhost:8080/oauth2/callback'),
    post_logout_redirect_uris: list(env.IDP_POST_LOGOUT_REDIRECT_URIS || 'http://127.0.0.1:8080/,http://localhost:8080/'),
  }];
}
if (!Array.isArray(clients)) fail('clients: expected a JSON array of client metadata');
clients = clients.map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'RS256',
  ...c,
}));

// Users. `sub` is the account id; a user is found by sub or by email.
function groupNames(prefix, n) {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i + 1).padStart(3, '0')}`);
}
const defaultUsers = [
  {
    sub: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Example',
    given_name: 'Alice',
    family_name: 'Example',
    preferred_username: 'alice',
    groups: ['admins', 'devs'],
    roles: ['admin'],
  },
  {
    sub: 'bob',
    email: 'bob@example.org',
    email_verified: true,
    name: 'Bob Example',
    given_name: 'Bob',
    family_name: 'Example',
    preferred_username: 'bob',
    groups: ['devs'],
    roles: ['user'],
  },
  {
    sub: 'large',
    email: 'large@example.com',
    email_verified: true,
    name: 'Large Claims',
    preferred_username: 'large',
    // 200 names of 23 characters: an ID token of about 7 KB, more than one cookie can hold.
    groups: groupNames('large-claims-group', config.largeGroups),
    roles: ['user'],
  },
];
const users = (Array.isArray(file.users) ? file.users : defaultUsers).map((u) => ({
  ...u,
  groups: [...(u.groups ?? []), ...groupNames('extra-group', config.extraGroups)],
}));
for (const u of users) {
  if (typeof u.sub !== 'string' || !u.sub) fail(`users: every user needs a string "sub", found ${JSON.stringify(u)}`);
}
function findUser(id) {
  if (typeof id !== 'string') return undefined;
  return users.find((u) => u.sub === id || u.email === id);
}

// A fresh private key as a JWK. Generated as PEM and exported from a key read back from it: on
// Node 20, exporting the KeyObject that generateKeyPairSync returned can deadlock the process —
// a GC during the JWK export finalizes the generation job, whose copy of the key locks the mutex
// the export holds (seen as a start-up that never reports ready, ≈ 1 in 200 under load; gdb:
// ~KeyGenJob under ExportJWKRsaKey). The key read back from PEM has a mutex of its own.
function freshJwk(type, options = {}) {
  const { privateKey } = generateKeyPairSync(type, {
    ...options,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return createPrivateKey(privateKey).export({ format: 'jwk' });
}

// Signing keys: RSA (RS256/PS256), P-256 (ES256) and Ed25519 (EdDSA).
function freshKeys() {
  const kid = randomBytes(6).toString('hex');
  const rsa = freshJwk('rsa', { modulusLength: 2048 });
  const ec = freshJwk('ec', { namedCurve: 'P-256' });
  const ed = freshJwk('ed25519');
  return {
    keys: [
      { ...rsa, kid: `rsa-${kid}`, use: 'sig' },
      { ...ec, kid: `ec-${kid}`, use: 'sig' },
      { ...ed, kid: `ed-${kid}`, use: 'sig' },
    ],
  };
}
let jwks;
if (config.keysFile && existsSync(config.keysFile)) {
  try {
    jwks = JSON.parse(readFileSync(config.keysFile, 'utf8'));
  } catch (err) {
    fail(`cannot read keys file ${config.keysFile}: ${err.message}`);
  }
} else {
  jwks = freshKeys();
  if (config.keysFile) writeFileSync(config.keysFile, JSON.stringify(jwks, null, 2), { mode: 0o600 });
}

// ---------------------------------------------------------------------------------------------
// Logging and counters

function log(event, fields = {}) {
  const parts = Object.entries(fields)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`);
  process.stdout.write(`idp ${new Date().toISOString()} ${event}${parts.length ? ` ${parts.join(' ')}` : ''}\n`);
}

const COUNTERS = [
  'authorization_code_grants',
  'refresh_token_grants',
  'other_grants',
  'grant_errors',
  'refresh_token_grant_errors',
  'authorizations',
  'authorization_errors',
  'logins',
  'login_failures',
  'consents',
  'end_sessions',
  'backchannel_logouts_sent',
  'backchannel_logout_errors',
  'grants_revoked',
  'introspections',
  'revocations',
  'userinfo_requests',
  'discovery_requests',
  'jwks_requests',
  'server_errors',
  'client_auth_method_mismatches',
];
const stats = {};
function resetStats() {
  for (const k of COUNTERS) stats[k] = 0;
}
resetStats();
const bump = (k) => { stats[k] = (stats[k] ?? 0) + 1; };

let defaultUser = config.defaultUser;
let mountPath = ''; // the issuer's path, e.g. /idp

// ---------------------------------------------------------------------------------------------
// The provider

function html(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;
}
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// Adds everything the request asks for to the grant, so consent is never prompted.
function grantRequested(grant, ctx) {
  const { oidc } = ctx;
  const scopes = [...oidc.requestParamOIDCScopes];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const claims = [...oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  for (const [indicator, rs] of Object.entries(oidc.resourceServers ?? {})) {
    const wanted = [...oidc.requestParamScopes].filter((s) => rs.scopes.has(s));
    if (wanted.length) grant.addResourceScope(indicator, wanted.join(' '));
  }
}

function buildProvider(issuer) {
  const mount = new URL(issuer).pathname.replace(/\/$/, '');
  const provider = new Provider(issuer, {
    clients,
    jwks,
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username', 'groups', 'roles'],
      groups: ['groups', 'roles'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    async findAccount(_ctx, sub) {
      const user = users.find((u) => u.sub === sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        async claims() {
          return { ...user };
        },
      };
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          if (config.logoutConfirm === 'manual') {
            ctx.body = html('Sign out', `<h1>Sign out of ${escapeHtml(ctx.host)}?</h1>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
            return;
          }
          // `logout=yes` ends the whole IdP session (and notifies every client of it through
          // back-channel logout); a script-less client posts this one form as it is.
          const auto = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>');
          ctx.body = html('Signing out', `${auto}<script>document.forms[0].submit()</script>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = html('Signed out', '<h1>Signed out</h1>');
        },
      },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true, async allowedPolicy(_ctx, client, token) { return token.clientId === client.clientId; } },
      introspection: { enabled: true, async allowedPolicy() { return true; } },
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        async defaultResource(_ctx, _client, oneOf) { return oneOf; },
        async useGrantedResource() { return true; },
        async getResourceServerInfo(_ctx, indicator) {
          const rs = config.resourceServers[indicator];
          if (!rs) throw new oidcErrors.InvalidTarget();
          return {
            scope: rs.scope ?? 'api',
            audience: rs.audience ?? indicator,
            accessTokenTTL: rs.accessTokenTTL ?? config.ttl.AccessToken,
            accessTokenFormat: rs.accessTokenFormat ?? 'jwt',
            jwt: { sign: { alg: rs.alg ?? 'RS256' } },
          };
        },
      },
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'],
    },
    pkce: { required: () => config.pkceRequired },
    // Refresh tokens for every code grant of a client allowed the refresh_token grant; the stock
    // policy also wants `offline_access`, which it drops unless `prompt=consent`.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => config.rotateRefreshTokens,
    loadExistingGrant: async (ctx) => {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant) {
        grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
      }
      grantRequested(grant, ctx);
      await grant.save();
      return grant;
    },
    ttl: { ...config.ttl },
    interactions: { url: async (_ctx, interaction) => `${mount}/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = html('Error', Object.entries(out).map(([k, v]) => `<pre><strong>${escapeHtml(k)}</strong>: ${escapeHtml(v)}</pre>`).join(''));
    },
    // Back-channel logout goes to the test's own listener on 127.0.0.1: the stock fetch refuses
    // special-use addresses (loopback included) to prevent SSRF, which does not apply here.
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
  });
  provider.proxy = config.proxy;

  // Event log and counters.
  const clientOf = (ctx) => ctx?.oidc?.client?.clientId ?? ctx?.oidc?.params?.client_id;
  provider.on('grant.success', (ctx) => {
    const type = ctx.oidc.params.grant_type;
    if (type === 'authorization_code') bump('authorization_code_grants');
    else if (type === 'refresh_token') bump('refresh_token_grants');
    else bump('other_grants');
    log('grant.success', { grant_type: type, client_id: clientOf(ctx), account: ctx.oidc.account?.accountId });
  });
  provider.on('grant.error', (ctx, err) => {
    const type = ctx.oidc?.params?.grant_type;
    bump('grant_errors');
    if (type === 'refresh_token') bump('refresh_token_grant_errors');
    log('grant.error', { grant_type: type, client_id: clientOf(ctx), error: err.error ?? err.message, detail: err.error_detail ?? err.error_description });
  });
  provider.on('authorization.success', (ctx) => {
    bump('authorizations');
    log('authorization.success', { client_id: clientOf(ctx), account: ctx.oidc.session?.accountId });
  });
  provider.on('authorization.error', (ctx, err) => {
    bump('authorization_errors');
    log('authorization.error', { client_id: clientOf(ctx), error: err.error ?? err.message, detail: err.error_detail ?? err.error_description });
  });
  provider.on('end_session.success', (ctx) => {
    bump('end_sessions');
    log('end_session.success', { client_id: clientOf(ctx) });
  });
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
    bump('backchannel_logouts_sent');
    log('backchannel.success', { client_id: client.clientId, account: accountId, sid, uri: client.backchannelLogoutUri });
  });
  provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => {
    bump('backchannel_logout_errors');
    log('backchannel.error', { client_id: client.clientId, account: accountId, sid, uri: client.backchannelLogoutUri, error: err.message });
  });
  provider.on('grant.revoked', (_ctx, grantId) => {
    bump('grants_revoked');
    log('grant.revoked', { grant: grantId });
  });
  provider.on('server_error', (ctx, err) => {
    bump('server_errors');
    log('server_error', { path: ctx.path, error: err.message });
  });
  for (const event of [
    'end_session.error', 'introspection.error', 'revocation.error', 'userinfo.error',
    'check_session_origin.error', 'discovery.error', 'jwks.error', 'backchannel_authentication.error',
    'interaction.started', 'interaction.ended', 'refresh_token.consumed', 'authorization_code.consumed',
  ]) {
    provider.on(event, (a, b) => {
      const err = a instanceof Error ? a : b instanceof Error ? b : undefined;
      log(event, {
        client_id: a?.oidc ? clientOf(a) : undefined,
        error: err ? (err.error ?? err.message) : undefined,
        detail: err ? (err.error_detail ?? err.error_description) : undefined,
      });
    });
  }

  // Routes of our own, in front of the provider's.
  provider.use(async (ctx, next) => {
    const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
    if (m) {
      await interaction(provider, ctx, m[2] !== undefined);
      return;
    }
    if (ctx.path.startsWith('/__test/')) {
      await testRoute(ctx);
      return;
    }
    if (config.strictClientAuth && ctx.method === 'POST' && CLIENT_AUTH_PATHS.has(ctx.path)) {
      if (await clientAuthMismatch(provider, ctx)) return;
    }
    await next();
    switch (ctx.oidc?.route) {
      case 'introspection': bump('introspections'); break;
      case 'revocation': bump('revocations'); break;
      case 'userinfo': bump('userinfo_requests'); break;
      case 'discovery': bump('discovery_requests'); break;
      case 'jwks': bump('jwks_requests'); break;
      default: break;
    }
  });
  return { provider, mount };
}

// oidc-provider accepts client_secret_basic and client_secret_post interchangeably for a client
// registered with either. A test IdP is stricter, so that a client using the wrong method fails:
// the registered token_endpoint_auth_method is the only one accepted (OIDC Core 9).
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/introspection', '/token/revocation']);

async function clientAuthMismatch(provider, ctx) {
  if (!ctx.is('application/x-www-form-urlencoded')) return false;
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    chunks.push(chunk);
    if (size > 56 * 1024) break;
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  // The provider reads an already consumed body from req.body.
  ctx.req.body = raw;
  const form = new URLSearchParams(raw);
  const authz = ctx.get('authorization');
  const basic = /^basic /i.test(authz);
  let clientId = form.get('client_id');
  if (basic) {
    try {
      const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
      clientId = decodeURIComponent(decoded.slice(0, decoded.indexOf(':')).replace(/\+/g, ' '));
    } catch {
      return false; // malformed: let the provider answer
    }
  }
  if (!clientId) return false;
  const client = await provider.Client.find(clientId).catch(() => undefined);
  if (!client) return false;
  const registered = client.clientAuthMethod;
  const used = basic ? 'client_secret_basic' : form.has('client_secret') ? 'client_secret_post' : undefined;
  if (!used || used === registered || !['client_secret_basic', 'client_secret_post'].includes(registered)) {
    return false;
  }
  bump('client_auth_method_mismatches');
  bump('grant_errors');
  log('client_auth.method_mismatch', { path: ctx.path, client_id: clientId, registered, used });
  ctx.status = 401;
  ctx.set('www-authenticate', 'Basic realm="test-idp"');
  ctx.body = {
    error: 'invalid_client',
    error_description: `client authentication failed: ${clientId} is registered with ${registered}, the request used ${used}`,
  };
  return true;
}

async function readForm(ctx) {
  if (ctx.method !== 'POST') return new URLSearchParams();
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > 64 * 1024) break;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(provider, ctx, fromLoginForm) {
  ctx.set('cache-control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.type = 'text';
    ctx.body = `interaction not found (missing or expired interaction cookie): ${err.message}\n`;
    log('interaction.not_found', { path: ctx.path, error: err.message });
    return;
  }
  const { prompt, params, uid } = details;
  let result;
  if (prompt.name === 'login') {
    const form = await readForm(ctx);
    const explicit = ctx.query.user ?? form.get('user') ?? params.login_hint;
    if (explicit === undefined && config.loginPage === 'form' && !fromLoginForm) {
      const options = users.map((u) => `<option value="${escapeHtml(u.sub)}"${u.sub === defaultUser ? ' selected' : ''}>${escapeHtml(u.email ?? u.sub)}</option>`).join('');
      ctx.type = 'html';
      ctx.body = html('Sign in', `<h1>Test IdP: sign in as</h1><form method="post" action="${escapeHtml(mountPath + ctx.path)}/login"><select name="user">${options}</select> <button type="submit">Sign in</button></form>`);
      return;
    }
    const chosen = explicit ?? defaultUser;
    const user = findUser(chosen);
    if (user) {
      bump('logins');
      log('login', { uid, client_id: params.client_id, user: user.sub });
      result = { login: { accountId: user.sub, amr: ['pwd'], remember: true } };
    } else {
      bump('login_failures');
      log('login.failed', { uid, client_id: params.client_id, user: chosen });
      result = { error: 'access_denied', error_description: 'unknown test user' };
    }
  } else if (prompt.name === 'consent') {
    // Normally unreachable (loadExistingGrant grants what is asked); kept for completeness.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    bump('consents');
    log('consent', { uid, client_id: params.client_id });
    result = { consent: details.grantId ? {} : { grantId } };
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(returnTo);
}

async function testRoute(ctx) {
  ctx.set('cache-control', 'no-store');
  const route = `${ctx.method} ${ctx.path}`;
  if (route === 'GET /__test/stats') {
    ctx.body = { ...stats, default_user: defaultUser };
    return;
  }
  if (route === 'POST /__test/reset') {
    resetStats();
    defaultUser = config.defaultUser;
    log('test.reset');
    ctx.body = { ...stats, default_user: defaultUser };
    return;
  }
  if (route === 'POST /__test/default-user') {
    const form = await readForm(ctx);
    const wanted = ctx.query.user ?? form.get('user');
    const user = findUser(wanted);
    if (!user) {
      ctx.status = 400;
      ctx.body = { error: 'unknown user', user: wanted ?? null };
      return;
    }
    defaultUser = user.sub;
    log('test.default_user', { user: user.sub });
    ctx.body = { default_user: defaultUser };
    return;
  }
  if (route === 'GET /__test/users') {
    ctx.body = users.map((u) => ({ sub: u.sub, email: u.email, groups: u.groups.length }));
    return;
  }
  ctx.status = 404;
  ctx.body = { error: 'unknown test route', route };
}

// ---------------------------------------------------------------------------------------------
// Start

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting\n');
};
const server = createServer((req, res) => handler(req, res));
server.keepAliveTimeout = 5000;
server.on('error', (err) => fail(`cannot listen on ${config.host}:${config.port}: ${err.message}`));
server.listen(config.port, config.host, () => {
  const { port } = server.address();
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  const path = config.issuerPath ? `/${config.issuerPath.replace(/^\/+|\/+$/g, '')}` : '';
  const issuer = config.issuer ?? `http://${hostForUrl}:${port}${path}`;
  let built;
  try {
    built = buildProvider(issuer);
  } catch (err) {
    fail(`invalid configuration: ${err.message}`);
  }
  const { provider, mount } = built;
  mountPath = mount;
  const callback = provider.callback();
  handler = (req, res) => {
    // An issuer with a path (http://host:port/idp) serves everything under that path.
    if (mount) {
      if (req.url !== mount && !req.url.startsWith(`${mount}/`) && !req.url.startsWith(`${mount}?`)) {
        res.statusCode = 404;
        res.end();
        return;
      }
      // oidc-provider derives its mount path from originalUrl (as under Express or koa-mount).
      req.originalUrl = req.url;
      req.url = req.url.slice(mount.length) || '/';
    }
    callback(req, res);
  };
  log('ready', {
    issuer,
    port,
    clients: clients.map((c) => c.client_id).join(','),
    users: users.map((u) => u.sub).join(','),
    access_token_ttl: config.ttl.AccessToken,
    id_token_ttl: config.ttl.IdToken,
  });
});

function shutdown(signal) {
  log('shutdown', { signal });
  server.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

// When started by a test, exit as soon as the test process is gone (a killed test run must not
// leave this server behind).
if (config.parentPid) {
  const ppid = int('parent pid', config.parentPid);
  setInterval(() => {
    try {
      process.kill(ppid, 0);
    } catch {
      shutdown('parent-exit');
    }
  }, 1000).unref();
}
