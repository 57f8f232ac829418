// GraphiQL at /graphql in headless Chromium with the network cut: every request that is
// not to the server under test is refused (and counted), so the page must load, run a
// query and show the Docs from the binary alone. The demo's key must be in the headers.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

/** Whether a browser to run the GraphiQL check is on this machine. */
export function browser() {
  return process.env.RAPPORT_CHROMIUM ?? CHROMIUM.find((path) => existsSync(path));
}

export async function graphiql({ base, key }) {
  const host = new URL(base).host;
  const instance = await chromium.launch({
    executablePath: browser(),
    // No name resolves but the loopback address: the network is cut at the browser too.
    args: ["--no-sandbox", `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${new URL(base).hostname}`],
  });
  try {
    const context = await instance.newContext();
    const outside = [];
    await context.route("**/*", (route) => {
      const url = new URL(route.request().url());
      if (url.host === host || url.protocol === "data:") return route.continue();
      outside.push(url.href);
      return route.abort("internetdisconnected");
    });
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });

    const response = await page.goto(`${base}/graphql`);
    assert.equal(response.status(), 200);
    const policy = response.headers()["content-security-policy"] ?? "";
    assert.match(policy, /script-src 'self'/, `a strict CSP: ${policy}`);
    assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval|https?:/, `nothing but this server: ${policy}`);

    await page.waitForSelector(".graphiql-container", { timeout: 30_000 });
    await page.waitForSelector(".graphiql-editor .CodeMirror", { state: "attached", timeout: 10_000 });
    const editors = await page.evaluate(() =>
      [...document.querySelectorAll(".graphiql-editor .CodeMirror")].map((editor) => editor.CodeMirror.getValue()),
    );
    assert.ok(editors.some((text) => text.includes(`"Authorization": "Bearer ${key}"`)), `the demo key in the headers editor: ${editors}`);

    await setEditorText(page, ".graphiql-query-editor", "{ customers(first: 2) { edges { node { displayName } } } }");
    await page.click(".graphiql-execute-button");
    await page.waitForFunction(
      () => document.querySelector(".result-window")?.textContent?.includes("displayName"),
      null,
      { timeout: 15_000 },
    );
    const result = await page.locator(".result-window").textContent();
    assert.doesNotMatch(result, /"errors"/, `the query ran: ${result}`);

    await page.click('[aria-label="Show Documentation Explorer"]');
    await page.waitForSelector(".graphiql-doc-explorer", { timeout: 10_000 });
    await page.fill(".graphiql-doc-explorer-search-input input", "Customer");
    await page.waitForFunction(
      () => [...document.querySelectorAll(".graphiql-doc-explorer-search [role=option]")]
        .some((option) => option.textContent.trim().startsWith("Customer")),
      null,
      { timeout: 10_000 },
    );

    assert.deepEqual(outside, [], "GraphiQL asked for nothing outside this server");
    assert.deepEqual(problems, [], "no script error and no CSP violation");
    console.log("clients: GraphiQL offline in headless Chromium (strict CSP, demo key prefilled, a query, Docs lists Customer): ok");
  } finally {
    await instance.close();
  }
}

async function setEditorText(page, selector, text) {
  await page.waitForSelector(`${selector} .CodeMirror`, { timeout: 10_000 });
  await page.evaluate(
    ([selector, text]) => document.querySelector(`${selector} .CodeMirror`).CodeMirror.setValue(text),
    [selector, text],
  );
}
