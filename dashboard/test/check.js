// Loads the dashboard in a real browser (Chromium, headless) and prints every figure on the page
// (elements with data-k) as JSON; saves a full-page screenshot.
//   node test/check.js <url with #token=...> <screenshot.png> [chromium path] [viewport width]
'use strict';
const puppeteer = require('puppeteer-core');

(async () => {
  const [url, shot, chromium = '/usr/bin/chromium', width = '1440'] = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // No background connections (this machine's network is closed to anything but registries).
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--font-render-hinting=none', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    page.on('request', (r) => { if (!r.url().startsWith('http://127.0.0.1') && !r.url().startsWith('data:')) problems.push(`off-host request: ${r.url()}`); });
    await page.setViewport({ width: Number(width), height: 900, deviceScaleFactor: 1 });
    await page.goto(url, { waitUntil: 'networkidle0', timeout: 60000 });
    await page.waitForFunction(() => document.body.dataset.ready, { timeout: 60000 });
    const state = await page.evaluate(() => ({ ready: document.body.dataset.ready, error: document.body.dataset.error || null }));
    const figures = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-k]')].map((e) => [e.dataset.k, e.textContent])));
    const charts = await page.evaluate(() => [...document.querySelectorAll('canvas')].map((c) => ({ id: c.id, width: c.width, height: c.height, drawn: !!Chart.getChart(c) })));
    const formats = await page.evaluate(() => Object.fromEntries(['0', '0.004999', '0.00125', '0.0099996', '0.01', '1234567.005', '0.1', '12.5', '-3.14159', '0.00000012345']
      .map((v) => [v, window.llmCostFormatCost(v)])));
    // Nothing wider than the screen (a table too wide scrolls inside its box).
    const layout = await page.evaluate(() => ({
      viewport: window.innerWidth,
      page: document.documentElement.scrollWidth,
      wider: [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1
        && !e.closest('.scroll')).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`).slice(0, 10),
    }));
    const csv = await page.evaluate(() => window.llmCostCsv('rollup'));
    const csvButtons = await page.evaluate(() => document.querySelectorAll('button.csv').length);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ state, figures, charts, formats, problems, layout, csv, csvButtons }));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
