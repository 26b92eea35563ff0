#!/usr/bin/env node
// Clicks through the account pages in headless Debian chromium
// (playwright-core, executablePath /usr/bin/chromium), runs axe-core on
// every page in light and dark, and writes screenshots of each.
// Started by tests/api/browser.rs, which serves the app and the mails:
//
//   BASE    the app's origin (pages at /account)
//   MAIL    a test endpoint: GET $MAIL/mail?to=&n=&path= answers the path
//           and query of the n-th mail to `to` with a link at `path`
//   OIDC    the test OpenID Provider's issuer (empty: skip the OAuth step)
//   SHOTS   where screenshots go
//   CHROMIUM  the browser binary (default /usr/bin/chromium)
//
// Exits 0 when every step and every accessibility check passed; otherwise
// prints what failed and exits 1.

import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(process.cwd(), 'package.json'));
const { chromium } = require('playwright-core');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const BASE = process.env.BASE;
const MAIL = process.env.MAIL;
const OIDC = process.env.OIDC || '';
const SHOTS = process.env.SHOTS;
const UI = `${BASE}/account`;
const PW = 'correct-horse-battery';
const NEW_PW = 'a-brand-new-passphrase';
mkdirSync(SHOTS, { recursive: true });

const log = (...a) => console.log(new Date().toISOString(), ...a);
const failures = [];
const checked = new Set();

function fail(msg) {
  failures.push(msg);
  log('FAIL', msg);
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

// ---------------------------------------------------------------- TOTP
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(ch);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function totp(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32(secret)).update(msg).digest();
  const o = h[19] & 0xf;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

const stepNow = () => Math.floor(Date.now() / 1000 / 30);

// ------------------------------------------------------------- helpers
async function mailed(to, n, path) {
  const r = await fetch(`${MAIL}/mail?to=${encodeURIComponent(to)}&n=${n}&path=${encodeURIComponent(path)}`);
  expect(r.ok, `no mail ${n} to ${to} with ${path}`);
  return `${BASE}${await r.text()}`;
}

/// axe-core in light and dark (contrast differs), and a screenshot of
/// each. `name` is the page's name in the report and the file names.
async function check(page, name) {
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.evaluate(AXE);
    const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    for (const v of result.violations) {
      const line = `${name} (${scheme}): ${v.impact} ${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`;
      if (v.impact === 'serious' || v.impact === 'critical') fail(`axe ${line}`);
      else log('axe (minor)', line);
    }
    await page.screenshot({ path: join(SHOTS, `${name}-${scheme}.png`), fullPage: true });
  }
  await page.emulateMedia({ colorScheme: 'light' });
  checked.add(name);
}

/// Keyboard only: Tab reaches `selector` and shows a focus outline.
async function tabTo(page, selector, max = 30) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const hit = await page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector);
    if (hit) {
      const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      expect(outline !== 'none', `${selector} has no visible focus`);
      return;
    }
  }
  throw new Error(`Tab never reached ${selector}`);
}

/// Signs in with the keyboard alone: Tab to each field (each showing its
/// focus), type, Enter submits the form.
async function signInByKeyboard(page, email, password) {
  await page.goto(`${UI}/login`);
  await tabTo(page, '#email');
  await page.keyboard.type(email);
  await tabTo(page, '#password', 5);
  await page.keyboard.type(password);
  // Enter posts the form; wait for the page it leads to (after the 303).
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
}

async function signIn(page, email, password) {
  await page.goto(`${UI}/login`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForLoadState();
}

const pages = [];

async function step(name, fn) {
  log('STEP', name);
  try {
    await fn();
  } catch (e) {
    const where = [];
    for (const p of pages) {
      const text = await p.locator('body').innerText().catch(() => '');
      where.push(`  ${p.url()}: ${text.replace(/\s+/g, ' ').slice(0, 400)}`);
    }
    fail(`${name}: ${e.stack || e}\n${where.join('\n')}`);
    throw e;
  }
}

// ---------------------------------------------------------------- run
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

const email = `b${randomBytes(4).toString('hex')}@example.com`;
let secret = '';
let backup = [];
let usedStep = 0;

try {
  // bypassCSP only so axe can be injected; the pages run no script.
  const ctx = await browser.newContext({ bypassCSP: true, viewport: { width: 1024, height: 800 } });
  const page = await ctx.newPage();
  pages.push(page);

  await step('register', async () => {
    await page.goto(`${UI}/login`);
    await check(page, 'login');
    await tabTo(page, '#email');
    await page.getByRole('link', { name: 'Create an account' }).click();
    await check(page, 'register');
    // An error tied to its field first.
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    expect(await page.locator('#password[aria-describedby~="password-error"]').count() === 1, 'error not tied to the password field');
    await check(page, 'register-error');
    await page.getByLabel('Password').fill(PW);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('heading', { name: 'Check your inbox' }).waitFor();
    await check(page, 'check-inbox');
  });

  await step('verify through the mailed link', async () => {
    await page.goto(await mailed(email, 1, '/account/verify'));
    await check(page, 'verify');
    await page.getByRole('button', { name: 'Confirm my address' }).click();
    await page.getByText('Your address is confirmed').waitFor();
  });

  await step('sign in', async () => {
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password', { exact: true }).fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('alert').waitFor();
    await check(page, 'login-error');
    await signInByKeyboard(page, email, PW);
    expect(page.url() === `${UI}/me`, `after a keyboard-only sign-in at ${page.url()}`);
    await check(page, 'me');
    // Phone width.
    await page.setViewportSize({ width: 375, height: 740 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    expect(!overflow, 'the account page scrolls sideways at phone width');
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: join(SHOTS, `me-phone-${scheme}.png`), fullPage: true });
    }
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1024, height: 800 });
  });

  await step('enrol TOTP', async () => {
    await page.getByRole('link', { name: 'Authenticator app' }).click();
    await check(page, 'totp');
    await page.getByLabel('Current password').fill(PW);
    await page.getByRole('button', { name: 'Set up the authenticator app' }).click();
    await page.getByRole('img', { name: /QR code/ }).waitFor();
    await check(page, 'totp-enrol');
    secret = (await page.locator('.rs-secret').innerText()).trim();
    usedStep = stepNow();
    await page.getByLabel('Code from the app').fill(totp(secret, usedStep));
    await page.getByRole('button', { name: 'Turn it on' }).click();
    await page.getByRole('heading', { name: 'Your backup codes' }).waitFor();
    backup = await page.locator('.rs-codes code').allInnerTexts();
    expect(backup.length >= 8, `only ${backup.length} backup codes`);
    await check(page, 'backup-codes');
  });

  await step('sign out, sign in with TOTP', async () => {
    await page.goto(`${UI}/me`);
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.getByText('You are signed out').waitFor();
    await signIn(page, email, PW);
    expect(page.url() === `${UI}/mfa-confirm`, `no second step: ${page.url()}`);
    await check(page, 'mfa-confirm');
    usedStep += 1;
    await page.getByLabel('Code', { exact: true }).fill(totp(secret, usedStep));
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL(`${UI}/me`);
  });

  const other = await browser.newContext({ bypassCSP: true });
  const phone = await other.newPage();
  pages.push(phone);
  await step('see and end a second session', async () => {
    await signIn(phone, email, PW);
    await phone.getByText('Use a backup code instead').click();
    await phone.getByLabel('Backup code').fill(backup[0]);
    await phone.getByRole('button', { name: 'Use backup code' }).click();
    await phone.waitForURL(`${UI}/me`);
    await page.getByRole('link', { name: 'Sessions' }).click();
    await check(page, 'sessions');
    const rows = page.locator('.rs-session');
    expect(await rows.count() === 2, `sessions listed: ${await rows.count()}`);
    await rows.filter({ hasNotText: 'This device' }).getByRole('button').click();
    await page.getByText('That session was signed out').waitFor();
    await phone.goto(`${UI}/me`);
    expect(phone.url().startsWith(`${UI}/login`), `the ended session still works: ${phone.url()}`);
  });

  await step('change password', async () => {
    await page.getByRole('link', { name: 'Account', exact: true }).click();
    await page.getByLabel('Current password').first().fill(PW);
    await page.getByLabel('New password').fill(NEW_PW);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.waitForLoadState();
    const ok = await page.getByText('Your password was changed').count();
    expect(ok === 1 || page.url().includes('/login'), `no confirmation: ${page.url()}`);
  });

  await step('forgot and reset through the mailed link', async () => {
    await phone.goto(`${UI}/forgot`);
    await check(phone, 'forgot');
    await phone.getByLabel('Email').fill(email);
    await phone.getByRole('button', { name: 'Send the link' }).click();
    await phone.getByText('If an account uses this address').waitFor();
    await phone.goto(await mailed(email, 2, '/account/reset-password'));
    await check(phone, 'reset');
    await phone.getByLabel('New password').fill(PW);
    await phone.getByRole('button', { name: 'Save the new password' }).click();
    await phone.getByText('Your password was changed').waitFor();
  });

  await step('sign in after the reset and delete the account', async () => {
    await signIn(page, email, PW);
    await page.getByText('Use a backup code instead').click();
    await page.getByLabel('Backup code').fill(backup[1]);
    await page.getByRole('button', { name: 'Use backup code' }).click();
    await page.waitForURL(`${UI}/me`);
    await page.getByRole('link', { name: 'Sign-in methods' }).click();
    await check(page, 'methods');
    await page.getByRole('link', { name: 'Account', exact: true }).click();
    await page.locator('#delete_password').fill(PW);
    await page.getByRole('button', { name: 'Delete my account' }).click();
    await page.getByText('Your account was deleted').waitFor();
    await signIn(page, email, PW);
    await page.getByRole('alert').waitFor();
  });

  await step('other pages', async () => {
    await page.goto(`${UI}/confirm-email-change?token=not-a-real-token`);
    await check(page, 'email-change-confirm');
    await page.goto(`${UI}/no-such-page`);
    await check(page, 'not-found');
  });

  if (OIDC) {
    await step('sign in with the OAuth test provider', async () => {
      const sub = `u${randomBytes(4).toString('hex')}`;
      const hint = encodeURIComponent(JSON.stringify({ sub, email: `${sub}@example.test`, email_verified: true }));
      const ctx2 = await browser.newContext({ bypassCSP: true });
      // The provider picks its user from the login hint; a person would
      // type it at the provider instead. Our start answer's redirect gets
      // the hint appended (Playwright does not route redirected requests).
      await ctx2.route(`${UI}/oauth/op/start`, async (route) => {
        const r = await route.fetch({ maxRedirects: 0 });
        const headers = {};
        for (const { name, value } of r.headersArray()) {
          const k = name.toLowerCase();
          headers[k] = headers[k] ? `${headers[k]}\n${value}` : value;
        }
        headers.location = `${headers.location}&login_hint=${hint}`;
        await route.fulfill({ status: r.status(), headers, body: '' });
      });
      const p2 = await ctx2.newPage();
      pages.push(p2);
      p2.on('response', (r) => log('oauth hop', r.status(), r.url().slice(0, 120)));
      await p2.goto(`${UI}/login`);
      await p2.getByRole('link', { name: /^Op$/i }).click();
      await p2.waitForURL(`${UI}/me`, { timeout: 30000 });
      expect((await p2.content()).includes(`${sub}@example.test`), 'the provider account is not shown');
      await p2.getByRole('link', { name: 'Sign-in methods' }).click();
      await check(p2, 'methods-oauth');
      await ctx2.close();
    });
  }
} catch (e) {
  if (!failures.length) fail(String(e.stack || e));
} finally {
  await browser.close();
}

log('pages checked:', [...checked].join(', '));
if (failures.length) {
  console.log(`\n${failures.length} failure(s):\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
log('all steps and accessibility checks passed');
