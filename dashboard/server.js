// llm_cost's dashboard: serves one page and PostGraphile's GraphQL API on loopback. The page
// reads only GraphQL with the visitor's token, so row-level security decides what it shows.
//   DATABASE_URL=postgres://... JWT_SECRET=... PORT=5173 node server.js
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const { postgraphile } = require('postgraphile');

const database = process.env.DATABASE_URL;
const secret = process.env.JWT_SECRET;
const port = Number(process.env.PORT || 5173);
if (!database || !secret) {
  console.error('DATABASE_URL and JWT_SECRET are required');
  process.exit(2);
}

const graphql = postgraphile(database, 'llm_cost', {
  jwtSecret: secret,
  defaultRole: 'llm_cost_reader',
  includeExtensionResources: true,
  disableQueryLog: true,
  extendedErrors: ['hint', 'detail', 'errcode'],
  graphqlRoute: '/graphql',
  graphiql: false,
  retryOnInitFail: false,
});

// Everything the page loads comes from here (no CDN at run time).
const files = {
  '/': [path.join(__dirname, 'public', 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(__dirname, 'public', 'app.js'), 'text/javascript; charset=utf-8'],
  '/style.css': [path.join(__dirname, 'public', 'style.css'), 'text/css; charset=utf-8'],
  '/vendor/chart.umd.min.js': [path.join(__dirname, 'node_modules', 'chart.js', 'dist', 'chart.umd.min.js'), 'text/javascript; charset=utf-8'],
};

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
    graphql(req, res);
  })
  .listen(port, '127.0.0.1', () => console.log(`llm_cost dashboard on http://127.0.0.1:${port}/`));
