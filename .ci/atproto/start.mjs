// A whole atproto network in this process, for the Bluesky connector's test against it
// (tests/integration/bluesky.rs, `against_a_real_atproto_network_…`): @atproto/dev-env's
// TestNetwork, i.e. a PLC directory (@did-plc/server), a PDS (@atproto/pds, SQLite) and
// the AppView (@atproto/bsky, PostgreSQL) with what it needs (bsync, ozone). Started by
// .ci/atproto/run, which copies this file next to the installed node_modules.
//
// Every server of the network listens on 127.0.0.1 only: the dev-env servers call
// `listen(port)`, which means every interface, so `listen` is made to bind loopback here
// before any of them loads.
//
// Environment: ATPROTO_DB_URL (the AppView's PostgreSQL database, emptied here at each
// start), ATPROTO_PLC_PORT, ATPROTO_PDS_PORT, ATPROTO_APPVIEW_PORT, ATPROTO_READY (a file
// written with the URLs once everything answers), ATPROTO_APP_PASSWORD_ACCESS_SECS (below).
import net from 'node:net'
import fs from 'node:fs'

const LOOPBACK = '127.0.0.1'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const [first] = args
  if (first !== null && typeof first === 'object') {
    // listen({ port, host, … }); a unix socket (`path`) or an inherited handle stays.
    if (first.path === undefined && first.handle === undefined && first.fd === undefined) {
      args[0] = { ...first, host: LOOPBACK }
    }
  } else if (first === undefined || typeof first === 'number' || /^\d+$/.test(String(first))) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === 'string') {
      args[1] = LOOPBACK
    } else {
      args.splice(1, 0, LOOPBACK)
    }
  }
  return listen.apply(this, args)
}

const env = (name, fallback) => process.env[name] || fallback
const dbUrl = env('ATPROTO_DB_URL', 'postgres://postgres@127.0.0.1:5432/rapport_atproto')
const ports = {
  plc: Number(env('ATPROTO_PLC_PORT', '18582')),
  pds: Number(env('ATPROTO_PDS_PORT', '18583')),
  bsky: Number(env('ATPROTO_APPVIEW_PORT', '18584')),
}
// TestNetwork.create asserts that REDIS_HOST is set, and nothing of the network uses it
// (dev-env 0.6.7 only hands it to the AppView's config). A port where nothing listens: a
// later version that does use it fails here instead of writing into a Redis of the machine.
process.env.REDIS_HOST = '127.0.0.1:9'

// A fresh database for each start: the AppView's schema and nothing left of a former run
// (a PLC and a PDS that start empty with an AppView that still knows their old accounts
// would disagree).
const { default: pg } = await import('pg')
const target = new URL(dbUrl)
const database = decodeURIComponent(target.pathname.slice(1))
if (!/^[a-z_][a-z0-9_]*$/.test(database)) {
  throw new Error(`ATPROTO_DB_URL names database "${database}": only [a-z0-9_] here`)
}
const admin = new URL(dbUrl)
admin.pathname = '/postgres'
const client = new pg.Client({ connectionString: admin.toString() })
await client.connect()
await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
await client.query(`CREATE DATABASE ${database}`)
await client.end()

const { TestNetwork } = await import('@atproto/dev-env')
const network = await TestNetwork.create({
  dbPostgresUrl: dbUrl,
  dbPostgresSchema: 'rapport',
  plc: { port: ports.plc },
  pds: { port: ports.pds, hostname: 'localhost' },
  bsky: { port: ports.bsky, publicUrl: `http://localhost:${ports.bsky}` },
})

// ATPROTO_APP_PASSWORD_ACCESS_SECS: how long the access token of an app-password session
// lasts (the PDS's is 120 minutes and has no setting). Short, a test sees the PDS refuse a
// token as `ExpiredToken` and an integration renew it with `refreshSession`, within
// seconds. The token is signed as the PDS signs it (same key, claims and header), only its
// `exp` is sooner; accounts' own sessions (password logins) are left as they are.
const accessSecs = Number(process.env.ATPROTO_APP_PASSWORD_ACCESS_SECS || 0)
if (accessSecs > 0) {
  const { SignJWT, decodeJwt } = await import('jose')
  const accounts = network.pds.ctx.accountManager
  const appPassword = new Set(['com.atproto.appPass', 'com.atproto.appPassPrivileged'])
  const shorten = async (tokens) => {
    if (!tokens) return tokens
    const claims = decodeJwt(tokens.accessJwt)
    if (!appPassword.has(claims.scope)) return tokens
    const accessJwt = await new SignJWT({ scope: claims.scope })
      .setProtectedHeader({ typ: 'at+jwt', alg: 'HS256' })
      .setAudience(claims.aud)
      .setSubject(claims.sub)
      .setIssuedAt(claims.iat)
      .setExpirationTime(claims.iat + accessSecs)
      .sign(accounts.jwtKey)
    return { ...tokens, accessJwt }
  }
  // Logins (createSession) and refreshes (refreshSession) both make their tokens here.
  for (const method of ['createSession', 'rotateRefreshToken']) {
    const original = accounts[method].bind(accounts)
    accounts[method] = async (...args) => shorten(await original(...args))
  }
}

const urls = {
  plc: `http://${LOOPBACK}:${network.plc.port}`,
  pds: `http://${LOOPBACK}:${network.pds.port}`,
  appview: `http://${LOOPBACK}:${network.bsky.port}`,
  appviewDid: network.bsky.serverDid,
  accessSecs,
}
console.log(JSON.stringify(urls))
if (process.env.ATPROTO_READY) {
  fs.writeFileSync(process.env.ATPROTO_READY, JSON.stringify(urls) + '\n')
}

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  // Closing waits for the AppView to index what is left: bounded, then the process ends.
  const timer = setTimeout(() => process.exit(0), 5000)
  timer.unref()
  try {
    await network.close()
  } finally {
    process.exit(0)
  }
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
