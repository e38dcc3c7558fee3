// A real OpenID Connect provider for sensorhub's sign-in tests: panva's oidc-provider (a certified
// implementation), on loopback, with its built-in login and consent pages (any password is accepted;
// the login name is the account id). Configured by environment variables:
//   OIDC_ISSUER    the issuer URL it announces (and puts into ID tokens' `iss`)
//   OIDC_PORT      the port to listen on (127.0.0.1)
//   OIDC_CLIENTS   JSON list of {client_id, client_secret, redirect_uris}
//   OIDC_ACCOUNTS  JSON object: account id -> claims ({email, email_verified, name})
// Prints "READY <port>" once it listens.
import Provider from 'oidc-provider';

const issuer = process.env.OIDC_ISSUER;
const port = Number(process.env.OIDC_PORT);
const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]');
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
  })),
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  cookies: { keys: ['sensorhub-test-provider-cookie-key'] },
  pkce: { required: () => true },
  ttl: {
    AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 600, Grant: 600,
  },
  async findAccount(ctx, id) {
    const claims = accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

provider.listen(port, '127.0.0.1', () => {
  console.log(`READY ${port}`);
});
