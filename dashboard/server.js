// llm_cost's dashboard: serves one page and PostGraphile's GraphQL API on loopback. The page
// reads only GraphQL with the visitor's token, so row-level security decides what it shows.
// /graphql answers only a valid token (401 otherwise), has no mutations, and limits query depth.
// Connect as a login that is a member of llm_cost_anonymous, llm_cost_reader and llm_cost_auditor
// only, NOINHERIT (scripts/demo.sql makes llm_cost_dashboard so); never of llm_cost_admin.
//   DATABASE_URL=postgres://... JWT_SECRET=... PORT=5173 node server.js
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { postgraphile } = require('postgraphile');
const { MutationPlugin } = require('graphile-build');
const { parse } = require('graphql');
const { Client } = require('pg');

const database = process.env.DATABASE_URL;
const secret = process.env.JWT_SECRET;
const port = Number(process.env.PORT || 5173);
if (!database || !secret) {
  console.error('DATABASE_URL and JWT_SECRET are required (the secret never defaults: make one with\n' +
    "  node -e \"console.log(require('crypto').randomBytes(32).toString('hex'))\")");
  process.exit(2);
}
if (secret.length < 32) {
  console.error('JWT_SECRET must be at least 32 characters');
  process.exit(2);
}

// What a request may be: a token signed with the secret, not expired, for postgraphile, whose
// role is one the dashboard's login may take (never llm_cost_admin: its login is not a member).
const ROLES = new Set(['llm_cost_reader', 'llm_cost_auditor']);
const MAX_DEPTH = 8;
const MAX_BODY = 100 * 1024;

function verify(header) {
  const m = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(header || '');
  if (!m) return 'a token is required (Authorization: Bearer <token>)';
  let head, claims;
  try {
    head = JSON.parse(Buffer.from(m[1], 'base64url').toString());
    claims = JSON.parse(Buffer.from(m[2], 'base64url').toString());
  } catch (e) {
    return 'malformed token';
  }
  if (!head || head.alg !== 'HS256') return 'unsupported token algorithm';
  const want = crypto.createHmac('sha256', secret).update(`${m[1]}.${m[2]}`).digest();
  const got = Buffer.from(m[3], 'base64url');
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return 'invalid token signature';
  if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) return 'token expired or without expiry';
  if (claims.aud !== 'postgraphile') return 'token for another audience';
  if (!ROLES.has(claims.role)) return 'token role not allowed here';
  return null;
}

// Depth of the deepest selection in a query (fragments followed), so that a nested query
// cannot make the server walk the whole database.
function depth(doc) {
  const frags = {};
  for (const d of doc.definitions) if (d.kind === 'FragmentDefinition') frags[d.name.value] = d;
  const walk = (set, seen) => {
    if (!set) return 0;
    let max = 0;
    for (const s of set.selections) {
      let d = 0;
      if (s.kind === 'Field') d = s.selectionSet ? 1 + walk(s.selectionSet, seen) : 1;
      else if (s.kind === 'InlineFragment') d = walk(s.selectionSet, seen);
      else if (s.kind === 'FragmentSpread') {
        if (seen.has(s.name.value)) return Infinity;
        d = walk(frags[s.name.value] && frags[s.name.value].selectionSet, new Set([...seen, s.name.value]));
      }
      max = Math.max(max, d);
    }
    return max;
  };
  let max = 0;
  for (const d of doc.definitions) if (d.kind === 'OperationDefinition') max = Math.max(max, walk(d.selectionSet, new Set()));
  return max;
}

function refuse(res, status, message) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify({ errors: [{ message }] }));
}

const graphql = postgraphile(database, 'llm_cost', {
  jwtSecret: secret,
  jwtVerifyOptions: { audience: 'postgraphile', algorithms: ['HS256'] },
  // No request without a token reaches the database (refused above); were one to, it would
  // run as this role, which has no rights (pgDefaultRole is library mode's name for it).
  pgDefaultRole: 'llm_cost_anonymous',
  // Read only: no Mutation type at all (no create/update/delete, no VOLATILE function).
  disableDefaultMutations: true,
  skipPlugins: [MutationPlugin],
  ignoreRBAC: false,
  includeExtensionResources: true,
  disableQueryLog: true,
  extendedErrors: ['hint', 'errcode'],
  graphqlRoute: '/graphql',
  graphiql: false,
  retryOnInitFail: false,
  bodySizeLimit: '100kB',
});

// Everything the page loads comes from here (no CDN at run time).
const files = {
  '/': [path.join(__dirname, 'public', 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(__dirname, 'public', 'app.js'), 'text/javascript; charset=utf-8'],
  '/style.css': [path.join(__dirname, 'public', 'style.css'), 'text/css; charset=utf-8'],
  '/vendor/chart.umd.min.js': [path.join(__dirname, 'node_modules', 'chart.js', 'dist', 'chart.umd.min.js'), 'text/javascript; charset=utf-8'],
};

// The login must not be able to do more than read through row security: refuse to serve when it
// is a superuser, bypasses row security, or holds llm_cost_admin's rights (directly or by SET ROLE).
async function checkLogin() {
  const c = new Client({ connectionString: database });
  await c.connect();
  try {
    const { rows } = await c.query(`SELECT r.rolsuper, r.rolbypassrls,
             pg_catalog.pg_has_role(current_user, 'llm_cost_admin', 'MEMBER') AS admin
        FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`);
    const r = rows[0];
    const bad = [r.rolsuper && 'is a superuser', r.rolbypassrls && 'bypasses row security', r.admin && 'is a member of llm_cost_admin'].filter(Boolean);
    if (bad.length) {
      console.error(`refusing to serve: the database login ${bad.join(', ')}; connect as a login that is a member of llm_cost_anonymous, llm_cost_reader and llm_cost_auditor only (scripts/demo.sql makes llm_cost_dashboard so)`);
      process.exit(2);
    }
  } finally {
    await c.end();
  }
}

checkLogin().then(serve, (e) => {
  console.error(`cannot check the database login: ${e.message}`);
  process.exit(2);
});

function serve() {
http
  .createServer((req, res) => {
    const url = (req.url || '/').split('?')[0];
    const file = files[url];
    if (req.method === 'GET' && file) {
      fs.readFile(file[0], (err, body) => {
        if (err) {
          res.writeHead(500);
          res.end(String(err));
          return;
        }
        res.writeHead(200, {
          'Content-Type': file[1],
          'Cache-Control': 'no-store',
          'Content-Security-Policy': "default-src 'self'; style-src 'self'; img-src 'self' data:",
        });
        res.end(body);
      });
      return;
    }
    if (url !== '/graphql') {
      res.writeHead(404);
      res.end();
      return;
    }
    const why = verify(req.headers.authorization);
    if (why) {
      refuse(res, 401, why);
      return;
    }
    if (req.method !== 'POST') {
      refuse(res, 405, 'POST only');
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        refuse(res, 413, 'request too large');
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY) return;
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString() || 'null');
        if (!body || typeof body.query !== 'string' || Array.isArray(body)) throw new Error('a JSON object with a query');
        const d = depth(parse(body.query));
        if (d > MAX_DEPTH) {
          refuse(res, 400, `query depth ${d} exceeds ${MAX_DEPTH}`);
          return;
        }
      } catch (e) {
        refuse(res, 400, `bad request: ${e.message}`);
        return;
      }
      // Already parsed: PostGraphile's body parser stands aside.
      req.body = body;
      req._body = true;
      graphql(req, res);
    });
  })
  .listen(port, '127.0.0.1', () => console.log(`llm_cost dashboard on http://127.0.0.1:${port}/`));
}
