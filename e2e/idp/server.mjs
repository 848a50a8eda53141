// The real OpenID provider used by Portcullis end-to-end tests: the npm
// package oidc-provider (OpenID Certified), with its development login and
// consent pages. Configured entirely from environment variables so each test
// gets its own issuer:
//   IDP_PORT     port on 127.0.0.1 (0 = pick one; the chosen port is printed)
//   IDP_CLIENTS  JSON array of {client_id, client_secret, redirect_uris}
//   IDP_USERS    JSON object login -> {email, name, groups}
// It prints exactly one line "READY <issuer>" on stdout when it listens.


import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const clients = JSON.parse(process.env.IDP_CLIENTS || '[]').map((c) => ({
  grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));
const users = JSON.parse(process.env.IDP_USERS || '{}');

function start(port) {
  const server = http.createServer();
  server.listen(port, '127.0.0.1', () => {
    const issuer = `http://127.0.0.1:${server.address().port}`;
    const provider = new Provider(issuer, {
      clients,
      pkce: { required: () => true, methods: ['S256'] },
      // Put the scope claims in the ID token too: Portcullis maps groups
      // from the verified ID token only, never from an unsigned response.
      conformIdTokenClaims: false,
      scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name'],
        groups: ['groups'],
      },
      features: {
        devInteractions: { enabled: true },
        deviceFlow: { enabled: true },
        revocation: { enabled: true },
      },
      cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
      async findAccount(ctx, id) {
        const u = users[id];
        if (!u) return undefined;
        return {
          accountId: id,
          async claims() {
            return {
              sub: `sub-${id}`,
              email: u.email,
              email_verified: true,
              name: u.name,
              groups: u.groups || [],
            };
          },
        };
      },
      ttl: { IdToken: 300, AccessToken: 300, AuthorizationCode: 60, Interaction: 600, Session: 3600, Grant: 3600 },
    });
    provider.proxy = false;
    server.on('request', provider.callback());
    process.stdout.write(`READY ${issuer}\n`);
  });
}

process.on('SIGTERM', () => process.exit(0));
start(Number(process.env.IDP_PORT || 0));
