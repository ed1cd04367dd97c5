// The unmodified AWS SDK for JavaScript v3 asking STS "who am I?" with
// credentials it finds on its own. Run under `keycard exec INSTANCE -- node
// caller.mjs MODE ...`, which strips static credentials and points the SDK at
// the instance's metadata service (or, with --via container, at the
// container credentials endpoint). Driven by tests/e2e/test_js_sdk.py.
//
// Modes (each prints one JSON object on stdout):
//   once                      default chain (fromNodeProviderChain), one
//                             GetCallerIdentity: {arn, accessKeyId, ...}
//   imds-direct               the same with fromInstanceMetadata()
//   container-direct          the same with fromHttp() (the provider the
//                             default chain tries first for
//                             AWS_CONTAINER_CREDENTIALS_FULL_URI +
//                             AWS_CONTAINER_AUTHORIZATION_TOKEN)
//   container-metadata        the same with fromContainerMetadata() (the
//                             older provider, the chain's fallback)
//   soak SECONDS INTERVAL_MS  one client for SECONDS, GetCallerIdentity every
//                             INTERVAL_MS: {calls, errors, keys, trace}
//
// `accessKeyId` is the key that actually signed the request, read from the
// Authorization header of the request as sent. In `soak`, every call also
// records the key the client's credential provider returns just before and
// just after the call.
//
// The client uses maxAttempts 1 so that no failure is hidden by a retry.
// Failures exit 1 with the error on stderr.

import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import {
  fromContainerMetadata,
  fromHttp,
  fromInstanceMetadata,
  fromNodeProviderChain,
} from "@aws-sdk/credential-providers";

const PROVIDERS = {
  once: () => fromNodeProviderChain(),
  soak: () => fromNodeProviderChain(),
  "imds-direct": () => fromInstanceMetadata(),
  "container-direct": () => fromHttp(),
  "container-metadata": () => fromContainerMetadata(),
};

function usage() {
  console.error(`usage: caller.mjs (${Object.keys(PROVIDERS).join(" | ")}) [SECONDS INTERVAL_MS]`);
  process.exit(2);
}

// The access key id in "AWS4-HMAC-SHA256 Credential=AKID/date/region/sts/aws4_request, ...".
function signingKey(request) {
  const headers = request?.headers ?? {};
  const auth = Object.entries(headers).find(([k]) => k.toLowerCase() === "authorization")?.[1];
  const m = /Credential=([^/]+)\//.exec(auth ?? "");
  return m ? m[1] : null;
}

function makeClient(credentials) {
  const client = new STSClient({ credentials, maxAttempts: 1 });
  const signed = { key: null };
  // The deserialize step runs after signing (finalizeRequest) and wraps the
  // actual send, so the request here carries the final Authorization header.
  client.middlewareStack.add(
    (next) => async (args) => {
      signed.key = signingKey(args.request);
      return next(args);
    },
    { step: "deserialize", name: "keycardRecordSigningKey", priority: "high" },
  );
  return { client, signed };
}

async function currentKey(client) {
  const creds = await client.config.credentials();
  return creds.accessKeyId;
}

function describe(err) {
  return {
    name: err?.name ?? String(err),
    message: err?.message ?? String(err),
    code: err?.Code ?? err?.code ?? err?.$metadata?.httpStatusCode ?? null,
  };
}

async function once(mode) {
  const { client, signed } = makeClient(PROVIDERS[mode]());
  const out = await client.send(new GetCallerIdentityCommand({}));
  return {
    mode,
    arn: out.Arn,
    account: out.Account,
    userId: out.UserId,
    accessKeyId: signed.key,
    providerAccessKeyId: await currentKey(client),
  };
}

async function soak(seconds, intervalMs) {
  const { client, signed } = makeClient(PROVIDERS.soak());
  const start = Date.now();
  const end = start + seconds * 1000;
  const keys = [];
  const seen = new Set();
  const note = (k) => {
    if (k && !seen.has(k)) {
      seen.add(k);
      keys.push(k);
    }
  };
  const errors = [];
  const trace = [];
  const arns = new Set();
  let calls = 0;
  while (Date.now() < end) {
    const t0 = Date.now();
    calls += 1;
    const row = { t: t0 - start, before: null, signed: null, after: null };
    signed.key = null;
    try {
      row.before = await currentKey(client);
      note(row.before);
      const out = await client.send(new GetCallerIdentityCommand({}));
      arns.add(out.Arn);
      row.signed = signed.key;
      note(row.signed);
      row.after = await currentKey(client);
      note(row.after);
    } catch (err) {
      row.signed = signed.key;
      note(row.signed);
      errors.push({ call: calls, t: t0 - start, signed: signed.key, ...describe(err) });
    }
    trace.push(row);
    const wait = intervalMs - (Date.now() - t0);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  return { calls, errors, keys, arns: [...arns], elapsedMs: Date.now() - start, trace };
}

async function main() {
  const [mode, ...rest] = process.argv.slice(2);
  if (!(mode in PROVIDERS)) usage();
  let result;
  if (mode === "soak") {
    const seconds = Number(rest[0]);
    const intervalMs = Number(rest[1]);
    if (!(seconds > 0) || !(intervalMs > 0)) usage();
    result = await soak(seconds, intervalMs);
  } else {
    result = await once(mode);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((err) => {
  const d = describe(err);
  console.error(`caller.mjs: ${d.name}: ${d.message}`);
  process.exit(1);
});
