// Rapport against the JavaScript clients frontend teams use, unchanged. Run: `npm ci &&
// node check.mjs path/to/rapport` (Node 22 or later: GraphQL Code Generator needs it).
//
// - relay-compiler on the committed schema.graphql and the documents in relay/;
// - against a real `rapport serve --demo` on a fresh SQLite directory:
//   - the `graphql-ws` library (what Apollo Client, urql and Relay use for subscriptions)
//     over `ws`: the key in `connection_init`, a conversation change seen live, the inbox
//     counts at once, a reconnect with the last cursor that misses nothing and repeats
//     nothing, and a bad key refused with 4403;
//   - graphql-js's full introspection query, codegen from the live URL, Apollo Client and
//     urql (apps.mjs);
//   - GraphiQL in headless Chromium with the network cut (graphiql.mjs; skipped with a
//     reason when no Chromium is installed, except under CI).

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { apps } from "./apps.mjs";
import { browser, graphiql } from "./graphiql.mjs";

const binary = process.argv[2];
if (!binary) {
  console.error("usage: node check.mjs path/to/rapport");
  process.exit(2);
}

const here = dirname(fileURLToPath(import.meta.url));
const relay = spawnSync(join(here, "node_modules/.bin/relay-compiler"), { cwd: here, encoding: "utf8" });
if (relay.status !== 0) {
  console.error(`relay-compiler failed on schema.graphql and relay/:\n${relay.stdout}${relay.stderr}`);
  process.exit(1);
}
console.log("clients: relay-compiler 21 on the committed schema (node(id:), @refetchable, @connection): ok");

const dataDir = mkdtempSync(join(tmpdir(), "rapport-clients-"));
// A fresh SQLite directory and nothing else of the caller's: a RAPPORT_DATABASE_URL (or
// config file, Meilisearch, outbound allowance) exported in the shell must not point the
// demo at a real database.
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("RAPPORT_")));
const server = spawn(binary, ["serve", "--demo", "--addr", "127.0.0.1:0"], {
  env: { ...env, RAPPORT_DATA_DIR: dataDir, RUST_LOG: "warn" },
  stdio: ["ignore", "pipe", "pipe"],
});
let stderr = "";
let stdout = "";
const ready = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`rapport did not start in 120 s:\n${stderr}`)), 120_000);
  const check = () => {
    const url = stderr.match(/GraphiQL: (http:\/\/127\.0\.0\.1:\d+)\/graphql/);
    // The key is the first whole line on stdout.
    const end = stdout.indexOf("\n");
    const key = end > 0 ? stdout.slice(0, end).trim() : "";
    if (url && key) {
      clearTimeout(timer);
      resolve({ base: url[1], key });
    }
  };
  server.stdout.on("data", (chunk) => { stdout += chunk; check(); });
  server.stderr.on("data", (chunk) => { stderr += chunk; check(); });
  server.on("exit", (code) => reject(new Error(`rapport exited with ${code}:\n${stderr}`)));
  server.on("error", (error) => reject(error));
});

let finishing = false;
async function finish(code) {
  if (finishing) return;
  finishing = true;
  if (server.exitCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await within(30_000, exited, "exit after SIGTERM").catch(() => server.kill("SIGKILL"));
  }
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(code);
}

// Never hang CI: the whole check has five minutes, and a cancelled job stops the server.
setTimeout(() => {
  console.error("clients: the check did not finish in 300 s");
  finish(1);
}, 300_000).unref();
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => finish(1));
}

/** Resolves with the first value `promise` gives, or fails after `ms`. */
function within(ms, promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)),
  ]);
}

try {
  const { base, key } = await ready;
  const gql = async (query, variables = {}) => {
    const response = await fetch(`${base}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    assert.equal(body.errors, undefined, JSON.stringify(body.errors));
    return body.data;
  };
  const setStatus = (id, status) =>
    gql("mutation($id: ID!, $status: ConversationStatus!) { setConversationStatus(input: {conversationId: $id, status: $status}) { conversation { status } } }", { id, status });

  const inbox = await gql("{ inbox(first: 1) { edges { node { id } } } }");
  const conversation = inbox.inbox.edges[0].node.id;
  const url = `${base.replace("http", "ws")}/graphql/ws`;
  const connect = (authorization) =>
    createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: { Authorization: authorization } });
  const changes = (after) => ({
    query: `subscription($id: ID!, $after: String) {
      conversationChanged(filter: {conversationId: $id}, after: $after) { cursor change conversation { id status } }
    }`,
    variables: { id: conversation, after },
  });
  // Live: a change made over HTTP arrives on the socket, with a cursor. The inbox counts
  // come at once with a cursor; the change subscription starts from it, so a change made
  // before it has joined still comes (from the log), never lost to the race.
  let client = connect(`Bearer ${key}`);
  const counts = client.iterate({ query: "subscription { inboxCountsChanged { cursor counts { open pending total } } }" });
  const firstCounts = (await within(10_000, counts.next(), "inbox counts")).value.data.inboxCountsChanged;
  assert.ok(firstCounts.counts.total >= 1, JSON.stringify(firstCounts));
  let live = client.iterate(changes(firstCounts.cursor));
  await setStatus(conversation, "PENDING");
  const pending = (await within(10_000, live.next(), "conversation change")).value.data.conversationChanged;
  assert.equal(pending.change, "STATUS_SET");
  assert.equal(pending.conversation.status, "PENDING");
  assert.match(pending.cursor, /^[A-Za-z0-9_-]{16}$/, "an opaque cursor");
  const movedCounts = (await within(10_000, counts.next(), "recount")).value.data.inboxCountsChanged.counts;
  assert.ok(movedCounts.pending >= 1, JSON.stringify(movedCounts));
  await live.return();
  await counts.return();
  await client.dispose();

  // Away: two changes happen; back with the last cursor, they come first, once each,
  // then live ones.
  await setStatus(conversation, "OPEN");
  await setStatus(conversation, "RESOLVED");
  client = connect(`Bearer ${key}`);
  live = client.iterate(changes(pending.cursor));
  const seen = [];
  for (let n = 0; n < 2; n++) {
    seen.push((await within(10_000, live.next(), "replayed change")).value.data.conversationChanged.conversation.status);
  }
  assert.deepEqual(seen, ["OPEN", "RESOLVED"]);
  // It delivered, so it has joined: the next change arrives live.
  await setStatus(conversation, "OPEN");
  const again = (await within(10_000, live.next(), "live change")).value.data.conversationChanged;
  assert.equal(again.conversation.status, "OPEN");
  const nothing = await Promise.race([live.next(), new Promise((resolve) => setTimeout(() => resolve("quiet"), 500))]);
  assert.equal(nothing, "quiet", `nothing repeated: ${JSON.stringify(nothing)}`);
  await live.return();
  await client.dispose();

  // A bad key is refused in connection_init with 4403, as the protocol's Forbidden.
  const refused = connect("Bearer rpk_wrong");
  const error = await within(10_000, refused.iterate(changes(null)).next().then(() => null, (err) => err), "refusal");
  assert.equal(error?.code, 4403, `closed with ${error?.code} ${error?.reason}`);
  await refused.dispose();

  console.log("clients: graphql-ws live changes, inbox counts, reconnect with the last cursor, bad key refused: ok");

  await apps({ base, key, schemaFile: join(here, "..", "schema.graphql") });
  if (browser()) {
    await graphiql({ base, key });
  } else if (process.env.CI) {
    throw new Error("no Chromium for the GraphiQL check (install Debian's chromium, or set RAPPORT_CHROMIUM)");
  } else {
    console.log("clients: GraphiQL check skipped: no Chromium here (Debian's chromium package, or RAPPORT_CHROMIUM)");
  }
  await finish(0);
} catch (error) {
  console.error(error);
  console.error(stderr.split("\n").slice(-30).join("\n"));
  await finish(1);
}
