// PostGraphile 5 over Rapport's own PostgreSQL tables: the reference server that
// `rapport bench --peer-url` measures Rapport against. It serves every table of the
// schema (customer, contact_point, identity, organization, customer_tag, tag,
// interaction, conversation, deal, note, …) as PostGraphile's default ("amber") GraphQL
// API, read-only in practice, on a loopback port. Nothing of Rapport's runs here.
//
// Settings (environment):
//   DATABASE_URL   the database Rapport uses (default postgres://postgres@127.0.0.1:5432/rapport_bench)
//   PG_SCHEMA      the schema holding Rapport's tables (default public)
//   PORT           the loopback port to serve on (default 5678)
//   POOL_SIZE      PostgreSQL connections (default 16, as Rapport's pool)
//
// Run it with the Node 22 this package brings: `node_modules/.bin/node postgraphile.mjs`
// (or `npm start`). PostGraphile reads the tables at start: start it after Rapport has
// migrated the database. GraphQL is served at http://127.0.0.1:PORT/graphql.

import { createServer } from "node:http";

import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const connectionString =
  process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/rapport_bench";
const schema = process.env.PG_SCHEMA ?? "public";
const port = Number(process.env.PORT ?? 5678);
const poolSize = Number(process.env.POOL_SIZE ?? 16);
// Loopback only: this is a benchmark peer without authentication.
const host = "127.0.0.1";

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString,
      poolConfig: { max: poolSize },
      schemas: [schema],
      // No subscriptions: no LISTEN connection held beside the pool.
      pubsub: false,
    }),
  ],
  grafserv: {
    port,
    host,
    graphiql: false,
    watch: false,
    // Rapport's 360 and list documents are small; the default limits are fine.
  },
  grafast: {
    explain: false,
  },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (error) => {
  console.error(error);
  process.exit(1);
});
await serv.addTo(server);
server.listen(port, host, () => {
  // The line `rapport bench --peer postgraphile` waits for.
  console.log(`postgraphile listening on http://${host}:${port}/graphql`);
});

const stop = async () => {
  server.close();
  await pgl.release();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
