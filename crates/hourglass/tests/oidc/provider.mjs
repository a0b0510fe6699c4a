// The OpenID provider of Hourglass's sign-in tests: the certified `oidc-provider`, configured
// with one confidential client (PKCE required), a login page where a test (or a browser) names
// the person and whether they used a second factor, and RP-initiated logout.
//
// Usage: node provider.mjs REDIRECT_URI [GROUPS_JSON] [NAMES_JSON]
// NAMES_JSON maps a login to the preferred_username its tokens carry (an account that took
// another's name at the provider); by default the login itself.
// It listens on a free loopback port and prints one line, `issuer=http://127.0.0.1:PORT`.
//
// For the attack tests only, `POST /__test/tamper` with a mode (`iss`, `aud`, `expired`,
// `nonce`, `none`) makes the next token response carry an ID token changed that way and
// re-signed with the provider's own key (`none`: unsigned), so that the relying party's checks,
// not the provider's, are what is tested.

import { generateKeyPair, exportJWK, SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const [redirectUri, groupsJson, namesJson] = process.argv.slice(2);
if (!redirectUri) {
  console.error('usage: node provider.mjs REDIRECT_URI [GROUPS_JSON]');
  process.exit(2);
}
const groups = JSON.parse(groupsJson || '{}');
const names = JSON.parse(namesJson || '{}');
const signinUri = redirectUri.replace(/\/signin\/callback$/, '/signin');

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'test-1', alg: 'RS256', use: 'sig' };
const signingKey = await importJWK(jwk, 'RS256');

let tamper = null;

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

async function readForm(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The issuer must name the port, so a free one is found first.
const probe = createServer();
await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
const port = probe.address().port;
await new Promise((resolve) => probe.close(resolve));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'hourglass',
      client_secret: 'test-client-secret',
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [signinUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  acrValues: ['pwd', 'mfa'],
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    // As Okta, Entra ID and Keycloak do, every ID token says how and when the person signed in.
    openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  cookies: { keys: ['hourglass-test-provider'] },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: names[id] || id,
          name: id,
          email: `${id}@example.com`,
          email_verified: true,
          groups: groups[id] || [],
        };
      },
    };
  },
  ttl: { IdToken: 3600, AccessToken: 600, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    tamper = (await readForm(ctx.req)).get('mode');
    ctx.body = 'ok';
    return;
  }
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (m) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><h1>Test identity provider</h1><p>Prompt: ${escapeHtml(details.prompt.name)}</p>
<form method="post" action="/interaction/${escapeHtml(details.uid)}">
<label for="login">User name</label> <input id="login" name="login" autocomplete="username">
<label><input type="checkbox" name="mfa" value="1"> Used a second factor</label>
<button id="idp-submit" type="submit">Sign in</button></form></body></html>`;
      return;
    }
    const form = await readForm(ctx.req);
    const accountId = (form.get('login') || '').trim();
    if (!accountId) {
      ctx.status = 400;
      ctx.body = 'login required';
      return;
    }
    const mfa = form.get('mfa') === '1';
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope(String(details.params.scope || 'openid'));
    const grantId = await grant.save();
    await provider.interactionFinished(
      ctx.req,
      ctx.res,
      {
        login: { accountId, amr: mfa ? ['pwd', 'otp'] : ['pwd'], acr: mfa ? 'mfa' : 'pwd' },
        consent: { grantId },
      },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  await next();
  if (process.env.OIDC_DEBUG && ctx.path === '/token' && ctx.body && ctx.body.id_token) console.error(JSON.stringify(decodeJwt(ctx.body.id_token)));
  if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
    const mode = tamper;
    tamper = null;
    const claims = decodeJwt(ctx.body.id_token);
    const header = decodeProtectedHeader(ctx.body.id_token);
    const now = Math.floor(Date.now() / 1000);
    if (mode === 'iss') claims.iss = 'http://127.0.0.1:1/other-issuer';
    if (mode === 'aud') claims.aud = 'another-client';
    if (mode === 'nonce') claims.nonce = 'not-the-nonce';
    if (mode === 'expired') {
      claims.iat = now - 7200;
      claims.exp = now - 3600;
    }
    if (mode === 'none') {
      const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      ctx.body = { ...ctx.body, id_token: `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.` };
    } else {
      const jwt = await new SignJWT(claims).setProtectedHeader({ alg: header.alg, kid: header.kid, typ: header.typ }).sign(signingKey);
      ctx.body = { ...ctx.body, id_token: jwt };
    }
  }
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`issuer=${issuer}`);
});
