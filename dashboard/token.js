// Prints a signed token (HS256) for the dashboard: node token.js <secret> <role> [user_id]
'use strict';
const crypto = require('crypto');
const [secret, role, userId] = process.argv.slice(2);
if (!secret || !role) {
  console.error('usage: node token.js <secret> <role> [user_id]');
  process.exit(2);
}
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const claims = { role, aud: 'postgraphile', exp: Math.floor(Date.now() / 1000) + 30 * 24 * 3600 };
if (userId) claims.user_id = userId;
const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
const sig = crypto.createHmac('sha256', secret).update(body).digest('base64url');
console.log(`${body}.${sig}`);
