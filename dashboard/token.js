// Prints a signed token (HS256) for the dashboard: node token.js <secret> <role> [user_id] [days]
//   role: llm_cost_reader (with the user_id whose spend it shows) or llm_cost_auditor (everything,
//   read only). The token expires after [days] (default 30).
'use strict';
const crypto = require('crypto');
const [secret, role, userId, days] = process.argv.slice(2);
if (!secret || !role) {
  console.error('usage: node token.js <secret> <llm_cost_reader|llm_cost_auditor> [user_id] [days]');
  process.exit(2);
}
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const claims = { role, aud: 'postgraphile', exp: Math.floor(Date.now() / 1000) + Math.round(Number(days || 30) * 24 * 3600) };
if (userId) claims.user_id = userId;
const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
const sig = crypto.createHmac('sha256', secret).update(body).digest('base64url');
console.log(`${body}.${sig}`);
