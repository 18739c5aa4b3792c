// A real OpenID provider for the console's sign-in tests: the certified
// `oidc-provider` package, on 127.0.0.1 port 0, with one static confidential client.
//
// Protocol with the test: prints {"issuer": URL} once listening, then reads one line
// from stdin, the client's redirect URI (the console's callback, known only once
// `execgate serve` runs), and prints {"ready": true}. Sign in on the provider's own
// login page with any user name: it becomes the `sub` of the ID token.
import http from "node:http";
import readline from "node:readline";
import Provider from "oidc-provider";

const CLIENT_ID = process.env.OIDC_CLIENT_ID || "execgate-console";
const CLIENT_SECRET = process.env.OIDC_CLIENT_SECRET || "test-secret-not-for-production";

let handler = (req, res) => {
  res.statusCode = 503;
  res.end("starting");
};
const server = http.createServer((req, res) => handler(req, res));
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  process.stdout.write(JSON.stringify({ issuer }) + "\n");
  const rl = readline.createInterface({ input: process.stdin });
  rl.once("line", (redirectUri) => {
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [redirectUri.trim()],
          grant_types: ["authorization_code"],
          response_types: ["code"],
        },
      ],
      async findAccount(ctx, id) {
        return {
          accountId: id,
          async claims() {
            return { sub: id, name: id };
          },
        };
      },
      cookies: { keys: ["execgate-console-test-cookie-key"] },
      features: { devInteractions: { enabled: true } },
    });
    handler = provider.callback();
    process.stdout.write(JSON.stringify({ ready: true }) + "\n");
  });
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
