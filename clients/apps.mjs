// The clients a frontend team builds with, unchanged, against a live Rapport: graphql-js's
// full introspection query (what GraphiQL, IDE plugins and Postman send), codegen from the
// live URL, Apollo Client 4 with `relayStylePagination`, and urql with graphcache. Each
// reads the 360 view of a customer, walks two pages of customers, and gets an error with
// its code.

import assert from "node:assert/strict";
import { getIntrospectionQuery, buildClientSchema, buildSchema, findBreakingChanges, findDangerousChanges } from "graphql";
import { readFileSync } from "node:fs";
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { relayStylePagination } from "@apollo/client/utilities";
import { BatchHttpLink } from "@apollo/client/link/batch-http";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { createHash } from "node:crypto";
import { Client, fetchExchange } from "@urql/core";
import { cacheExchange } from "@urql/exchange-graphcache";
import { generate } from "@graphql-codegen/cli";

const CUSTOMER_360 = `
  query Customer360($id: ID!) {
    customer(id: $id) {
      id displayName lifecycleStage
      contactPoints { id kind value }
      identities { id channel handle }
      organization { id name }
      tags { id name }
      timeline(first: 10) { edges { cursor node { id channel text occurredAt } } pageInfo { hasNextPage endCursor } }
      conversations { id status }
      deals { id title }
      notes { id body }
      metrics { interactionCount }
    }
  }`;

const CUSTOMERS_PAGE = `
  query Customers($first: Int!, $after: String) {
    customers(first: $first, after: $after) {
      edges { cursor node { id displayName } }
      pageInfo { hasNextPage endCursor }
    }
  }`;

/** Every check of this file, against the server at `base` with the admin `key`. */
export async function apps({ base, key, schemaFile }) {
  const endpoint = `${base}/graphql`;
  const authorization = `Bearer ${key}`;
  await introspection(endpoint, authorization, schemaFile);
  await codegen(endpoint, authorization);
  await apollo(endpoint, authorization);
  await persisted(endpoint, authorization);
  await batched(endpoint, authorization);
  await urql(endpoint, authorization);
}

/** `fetch` that notes every request body it sends. */
function recording() {
  const bodies = [];
  const fetcher = (url, options) => {
    bodies.push(JSON.parse(options.body));
    return fetch(url, options);
  };
  return { bodies, fetcher };
}

/** Apollo's persisted-query link: a miss, the text sent once, then the hash alone. */
async function persisted(endpoint, authorization) {
  const sha256 = (text) => createHash("sha256").update(text).digest("hex");
  const query = gql(`query Persisted${Date.now()} { viewer { role } }`);
  const run = async () => {
    const { bodies, fetcher } = recording();
    const link = new PersistedQueryLink({ sha256 }).concat(new HttpLink({ uri: endpoint, headers: { authorization }, fetch: fetcher }));
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const result = await client.query({ query, fetchPolicy: "network-only" });
    assert.equal(result.data.viewer.role, "ADMIN");
    return bodies;
  };
  const first = await run();
  assert.equal(first.length, 2, `a miss, then the text: ${JSON.stringify(first)}`);
  assert.equal(first[0].query, undefined);
  assert.ok(first[0].extensions.persistedQuery.sha256Hash);
  assert.ok(first[1].query);
  // Another client of the same workspace: the hash alone is enough now.
  const second = await run();
  assert.equal(second.length, 1, JSON.stringify(second));
  assert.equal(second[0].query, undefined);
  console.log("clients: Apollo persisted-query link (PERSISTED_QUERY_NOT_FOUND, register, hash alone): ok");
}

/** Apollo's `BatchHttpLink`: three queries in one HTTP request, three answers. */
async function batched(endpoint, authorization) {
  const { bodies, fetcher } = recording();
  const client = new ApolloClient({
    link: new BatchHttpLink({ uri: endpoint, headers: { authorization }, fetch: fetcher, batchMax: 10, batchInterval: 20 }),
    cache: new InMemoryCache(),
  });
  const [viewer, customers, bad] = await Promise.all([
    client.query({ query: gql("query A { viewer { role } }") }),
    client.query({ query: gql(CUSTOMERS_PAGE), variables: { first: 2 } }),
    client.query({ query: gql(CUSTOMER_360), variables: { id: "not-an-id" }, errorPolicy: "all" }),
  ]);
  assert.equal(bodies.length, 1, `one HTTP request: ${bodies.length}`);
  assert.ok(Array.isArray(bodies[0]) && bodies[0].length === 3, JSON.stringify(bodies[0]).slice(0, 200));
  assert.equal(viewer.data.viewer.role, "ADMIN");
  assert.equal(customers.data.customers.edges.length, 2);
  assert.ok(bad.error?.errors?.[0]?.extensions?.code, "the failing request has its own error");
  console.log("clients: Apollo BatchHttpLink (three operations, one request, one failing alone): ok");
}

const BUILT_IN_DIRECTIVE = /\b(deprecated|specifiedBy|include|skip|oneOf)\b/;

/** graphql-js's introspection query with every option on, over plain HTTP, as tools send it. */
async function introspection(endpoint, authorization, schemaFile) {
  const query = getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
    oneOf: true,
  });
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "content-type": "application/json", authorization },
    body: JSON.stringify({ query, operationName: "IntrospectionQuery" }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  const live = buildClientSchema(body.data);
  const committed = buildSchema(readFileSync(schemaFile, "utf8"));
  // No change either way, breaking or dangerous: the same types, fields, arguments,
  // values and defaults as the committed schema.graphql.
  for (const [from, to] of [[committed, live], [live, committed]]) {
    // The built-in directives are each library's own (async-graphql's `@deprecated` may
    // also sit on directive definitions); the schema's own types and fields must match.
    const changes = [...findBreakingChanges(from, to), ...findDangerousChanges(from, to)].filter(
      (change) => !(change.type.startsWith("DIRECTIVE_") && BUILT_IN_DIRECTIVE.test(change.description)),
    );
    assert.deepEqual(changes, [], "the live schema is the committed schema.graphql");
  }
  assert.ok(live.getQueryType().getFields().customer.description, "descriptions come through introspection");
  console.log("clients: graphql-js getIntrospectionQuery (all options) against the live URL: ok");
}

/** GraphQL Code Generator with the live URL as its schema (and the key as a header). */
async function codegen(endpoint, authorization) {
  const output = await generate(
    {
      schema: { [endpoint]: { headers: { authorization } } },
      documents: [CUSTOMER_360, CUSTOMERS_PAGE],
      generates: { "rapport.ts": { plugins: ["typescript", "typescript-operations"] } },
      silent: true,
    },
    false,
  );
  const types = output[0].content;
  assert.match(types, /export type Customer360Query = /);
  assert.match(types, /export type Customer = /);
  console.log("clients: GraphQL Code Generator from the live URL: ok");
}

/** Apollo Client 4: the 360 query, two pages merged by `relayStylePagination`, an error. */
async function apollo(endpoint, authorization) {
  const client = new ApolloClient({
    link: new HttpLink({ uri: endpoint, headers: { authorization } }),
    cache: new InMemoryCache({ typePolicies: { Query: { fields: { customers: relayStylePagination() } } } }),
  });
  const first = await client.query({ query: gql(CUSTOMERS_PAGE), variables: { first: 2 } });
  const page1 = first.data.customers;
  assert.equal(page1.edges.length, 2);
  assert.equal(page1.pageInfo.hasNextPage, true);
  // The next page from the network (as `fetchMore` does), merged into the one list.
  const more = await client.query({
    query: gql(CUSTOMERS_PAGE),
    variables: { first: 2, after: page1.pageInfo.endCursor },
    fetchPolicy: "network-only",
  });
  const merged = more.data.customers.edges.map((edge) => edge.node.id);
  assert.equal(merged.length, 4, "relayStylePagination merged both pages");
  assert.equal(new Set(merged).size, 4, "two pages, four different customers");
  assert.deepEqual(merged.slice(0, 2), page1.edges.map((edge) => edge.node.id), "the first page first");

  const id = page1.edges[0].node.id;
  const view = await client.query({ query: gql(CUSTOMER_360), variables: { id } });
  assert.equal(view.data.customer.id, id);
  assert.ok(Array.isArray(view.data.customer.timeline.edges));

  const bad = await client.query({ query: gql(CUSTOMER_360), variables: { id: "not-an-id" }, errorPolicy: "all" });
  const code = bad.error?.errors?.[0]?.extensions?.code;
  assert.ok(code, `an error with a code: ${JSON.stringify(bad.error)}`);
  console.log(`clients: Apollo Client 4 (360 view, two pages through relayStylePagination, an error coded ${code}): ok`);
  return { id };
}

/** urql with graphcache: the same 360 query, two pages, an error. */
async function urql(endpoint, authorization) {
  const client = new Client({
    url: endpoint,
    // Types without an id are embedded in their parent, as graphcache asks to be told.
    exchanges: [cacheExchange({ keys: { CustomerMetrics: () => null } }), fetchExchange],
    fetchOptions: { headers: { authorization } },
  });
  const first = await client.query(CUSTOMERS_PAGE, { first: 2 }).toPromise();
  assert.equal(first.error, undefined, String(first.error));
  const after = first.data.customers.pageInfo.endCursor;
  const second = await client.query(CUSTOMERS_PAGE, { first: 2, after }).toPromise();
  assert.equal(second.error, undefined, String(second.error));
  assert.notEqual(second.data.customers.edges[0].node.id, first.data.customers.edges[0].node.id);
  const id = first.data.customers.edges[0].node.id;
  const view = await client.query(CUSTOMER_360, { id }).toPromise();
  assert.equal(view.error, undefined, String(view.error));
  assert.equal(view.data.customer.displayName, first.data.customers.edges[0].node.displayName);
  const bad = await client.query(CUSTOMER_360, { id: "not-an-id" }).toPromise();
  const code = bad.error?.graphQLErrors?.[0]?.extensions?.code;
  assert.ok(code, `an error with a code: ${String(bad.error)}`);
  console.log(`clients: urql + graphcache (360 view, two pages, an error coded ${code}): ok`);
}
