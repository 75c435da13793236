// Drives the real VS Code workbench (served by code-server) in headless Chromium, as a user would, and prints
// what it saw as one JSON object on stdout. tests/editors/test_vscode.py starts code-server with the built
// .vsix installed, runs this script, and asserts on the JSON, the file on disk and the processes left behind.
//
//   node e2e.mjs --url URL --file NAME --line N --artifacts DIR
//
// Steps: wait for the extension's status-bar item to say the model is ready; open NAME; go to the end of line
// N; type "."; wait for the ghost text; screenshot; Alt+] to the next suggestion and Alt+[ back; Tab; save; run "Code Llama: Show Stats"; explain and refactor
// through Refactor... (the server's code actions), read the context menu; then point codellama.pythonPath at a
// missing interpreter, read the notification the extension shows, and put it back.
// --scenario column0 instead: at column 0 of line N (an indented blank line) Trigger Inline Suggestion (Alt+\),
// accept it with the key the test binds to Accept Inline Suggestion, save.
import { chromium } from 'playwright-core';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
    options: {
        url: { type: 'string' }, file: { type: 'string' }, line: { type: 'string' },
        artifacts: { type: 'string' },
        scenario: { type: 'string', default: 'full' }, // 'column0': only accept at column 0 of line N (issue 15)
        chromium: { type: 'string', default: '/usr/bin/chromium' },
    },
});
const seen = { steps: [] };
const STATUS = '[id$="codellama.status"]'; // the status-bar entry's element id ends with the item's id
const TOASTS = '.notifications-toasts .notification-toast';
const mod = 'Control';

function step(name, extra = {}) {
    seen.steps.push({ name, t: Math.round(performance.now()), ...extra });
}

async function toastTexts(page) {
    return page.locator(`${TOASTS} .notification-list-item-message`).allInnerTexts();
}

async function setSetting(page, id, value) {
    await page.keyboard.press(`${mod}+Comma`); // Preferences: Open Settings
    const search = page.locator('.settings-editor .settings-header .suggest-input-container');
    await search.waitFor();
    await search.click();
    await page.keyboard.press(`${mod}+A`);
    await page.keyboard.type(id);
    // code-server is VS Code's remote: a machine-scoped setting such as pythonPath is set under "Remote".
    await page.locator('.settings-editor .settings-tabs-widget .action-label', { hasText: 'Remote' }).first().click();
    // Wait for the search to narrow the list to this one setting (its title is "Codellama: Python Path").
    const title = id.split('.').pop().replace(/([A-Z])/g, ' $1').replace(/^./, c => c.toUpperCase());
    const box = page.locator('.settings-editor .setting-item-contents').filter({ hasText: title }).locator('input').first();
    await box.waitFor();
    await box.click();
    await box.fill(value); // the whole value at once: keystrokes can be lost on a loaded machine
    await page.keyboard.press('Enter');
    await page.waitForTimeout(1000); // the Settings editor writes after a short debounce
    await page.keyboard.press(`${mod}+W`);
}

/** Back to the code: the first editor group holds the test file (stats and explanations open beside it). */
async function focusCode(page) {
    await page.keyboard.press(`${mod}+1`);
    await page.locator('.editor-group-container.active .monaco-editor .view-lines')
        .filter({ hasText: 'class Stack' }).first().waitFor({ timeout: 10_000 });
}

/** Pick an entry of the open code-action menu with the keyboard, as a user would (arrows, Enter). */
async function chooseAction(page, title) {
    const focused = page.locator('.action-widget .monaco-list-row.focused');
    for (let i = 0; i < 12; i++) {
        if ((await focused.allInnerTexts()).some(t => t.startsWith(title))) {
            await page.keyboard.press('Enter');
            return;
        }
        await page.keyboard.press('ArrowDown');
    }
    throw new Error(`${title} is not in the code-action menu`);
}

async function goTo(page, where) {
    await page.keyboard.press(`${mod}+G`);
    await page.locator('.quick-input-widget input').waitFor();
    await page.keyboard.type(where);
    await page.keyboard.press('Enter');
}

/** The active editor's visible lines, top to bottom (the test file is short: all of it). */
async function editorLines(page) {
    const lines = page.locator('.editor-group-container.active .monaco-editor .view-lines .view-line');
    const boxes = await lines.evaluateAll(els => els.map(e => [parseFloat(e.style.top) || 0, e.innerText]));
    return boxes.sort((a, b) => a[0] - b[0]).map(([, text]) => text.replace(/\u00a0/g, ' '));
}

/** The text of the first frame (webviews are nested iframes) whose body contains `needle`. */
async function waitForFrameText(page, needle, timeout) {
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
        for (const frame of page.frames()) {
            const text = await frame.evaluate(() => document.body?.innerText ?? '').catch(() => '');
            if (text.includes(needle)) {
                return text;
            }
        }
        await page.waitForTimeout(500);
    }
    throw new Error(`no frame showed ${JSON.stringify(needle)} within ${timeout} ms`);
}

async function run(page) {
    await page.goto(args.url);
    await page.locator('.monaco-workbench .part.statusbar').waitFor({ timeout: 60_000 });
    step('workbench');

    // Ready: the sparkle icon replaces the spinner once codellama/stats says the model loaded.
    await page.locator(`${STATUS} .codicon-sparkle`).waitFor({ timeout: 120_000 });
    seen.statusReady = await page.locator(STATUS).first().innerText();
    step('model ready');

    // Open the file through Quick Open, as a user would.
    await page.locator('.monaco-workbench').click({ position: { x: 400, y: 300 } }).catch(() => {});
    await page.keyboard.press(`${mod}+P`);
    await page.locator('.quick-input-widget input').waitFor();
    await page.keyboard.type(args.file);
    await page.locator('.quick-input-list .monaco-list-row').first().waitFor();
    await page.keyboard.press('Enter');
    await page.locator('.editor-group-container.active .monaco-editor .view-lines').first()
        .filter({ hasText: 'class Stack' }).waitFor();
    step('file open');

    if (args.scenario === 'column0') return column0(page);

    // Go to the end of the line and type.
    await page.keyboard.press(`${mod}+G`);
    await page.locator('.quick-input-widget input').waitFor();
    await page.keyboard.type(args.line);
    await page.keyboard.press('Enter');
    await page.keyboard.press('End');
    const toastsBefore = await toastTexts(page);
    // VS Code asks for inline completions after a keystroke, but in this headless set-up it sometimes does not
    // ask after the first one (its own heuristics; the extension never sees a request): type it again, counted.
    const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text');
    seen.typingAttempts = 0;
    for (;;) {
        seen.typingAttempts += 1;
        await page.keyboard.type('.');
        try {
            await ghost.first().waitFor({ timeout: seen.typingAttempts < 3 ? 8_000 : 60_000 });
            break;
        } catch (e) {
            if (seen.typingAttempts >= 3) throw e;
            await page.keyboard.press('Backspace');
        }
    }
    seen.ghostText = (await ghost.allInnerTexts()).join('\n').replace(/\u00a0/g, ' ');
    step('ghost text');
    await page.screenshot({ path: path.join(args.artifacts, 'vscode-ghost-text.png') });
    seen.toastsWhileTyping = (await toastTexts(page)).filter(t => !toastsBefore.includes(t));

    // Cycling: "Show Next Inline Suggestion" (Alt+]) makes VS Code ask again with triggerKind Invoked, for which the
    // server decodes its other suggestions, and shows the next one; "Show Previous" (Alt+[) goes back to the first.
    const ghostText = async () => (await ghost.allInnerTexts()).join('\n').replace(/\u00a0/g, ' ');
    const ghostBecomes = async (ok, timeout) => {
        const end = performance.now() + timeout;
        for (;;) {
            const text = await ghostText().catch(() => '');
            if (text && ok(text)) return text;
            if (performance.now() > end) return `(timed out; last seen: ${JSON.stringify(text)})`;
            await page.waitForTimeout(100);
        }
    };
    await page.keyboard.press('Alt+BracketRight');
    seen.nextGhostText = await ghostBecomes(t => t !== seen.ghostText, 60_000);
    step('next suggestion');
    await page.screenshot({ path: path.join(args.artifacts, 'vscode-next-suggestion.png') });
    await page.keyboard.press('Alt+BracketLeft');
    seen.previousGhostText = await ghostBecomes(t => t === seen.ghostText, 10_000);
    step('previous suggestion');

    await page.keyboard.press('Tab');
    await ghost.first().waitFor({ state: 'detached', timeout: 10_000 }).catch(() => {});
    await page.keyboard.press(`${mod}+S`);
    await page.locator('.tab.active.dirty').waitFor({ state: 'detached', timeout: 10_000 }).catch(() => {});
    step('accepted and saved');
    // The status bar shows the last suggestion's latency.
    await page.locator(STATUS).filter({ hasText: /\d+ ms/ }).waitFor({ timeout: 10_000 }).catch(() => {});
    seen.statusAfter = await page.locator(STATUS).first().innerText();

    // A command from the palette: the server's counters open beside the code.
    await page.keyboard.press('F1');
    await page.locator('.quick-input-widget input').waitFor();
    await page.keyboard.type('Code Llama: Show Stats');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Show Stats' }).first().waitFor();
    await page.keyboard.press('Enter');
    const stats = page.locator('.editor-group-container.active .monaco-editor .view-lines')
        .filter({ hasText: 'model_state' });
    await stats.first().waitFor({ timeout: 20_000 });
    seen.statsText = (await stats.first().innerText()).replace(/\u00a0/g, ' ');
    step('stats');

    // Code actions. With the cursor in `push` and nothing selected, the light bulb appears (the server offers its
    // actions for the enclosing function); Ctrl+. opens its menu.
    await focusCode(page);
    await goTo(page, `${args.line}:12`);
    const bulb = page.locator('.editor-group-container.active .lightBulbWidget');
    await bulb.first().waitFor({ timeout: 20_000 });
    const actionMenu = page.locator('.action-widget');
    const actionRow = title => actionMenu.locator('.monaco-list-row', { hasText: title }).first();
    await page.keyboard.press(`${mod}+Period`);
    await actionRow('Explain with Code Llama').waitFor({ timeout: 20_000 });
    seen.refactorMenu = (await actionMenu.first().innerText()).split('\n');
    await chooseAction(page, 'Explain with Code Llama');
    // The explanation opens as a rendered markdown preview beside the code (a webview: nested frames).
    seen.explanation = await waitForFrameText(page, 'instruction-tuned', 120_000);
    seen.explanationTab = await page.locator('.tab', { hasText: 'Explanation' }).count() > 0;
    await page.screenshot({ path: path.join(args.artifacts, 'vscode-explanation.png') });
    step('explanation');

    // Refactor, from Refactor... (Ctrl+Shift+R): an input box asks what to change; the outcome is reported, and an
    // edit is applied only if the file still parses.
    await focusCode(page);
    await goTo(page, `${args.line}:9`); // the cursor moves: VS Code asks for the actions again
    await bulb.first().waitFor({ timeout: 20_000 }); // the actions are known (asking sooner races VS Code's own request)
    seen.linesBeforeRefactor = await editorLines(page);
    await page.keyboard.press(`${mod}+Shift+R`);
    await actionRow('Refactor with Code Llama').waitFor({ timeout: 20_000 });
    await chooseAction(page, 'Refactor with Code Llama');
    const input = page.locator('.quick-input-widget');
    await input.filter({ hasText: 'Refactor with Code Llama' }).waitFor({ timeout: 20_000 });
    seen.refactorPrompt = await input.first().innerText();
    await page.keyboard.type('use a list comprehension');
    await page.keyboard.press('Enter');
    const outcome = page.locator(`${TOASTS} .notification-list-item-message, .statusbar-item`)
        .filter({ hasText: /^Code Llama: / });
    await outcome.first().waitFor({ timeout: 120_000 });
    seen.refactorOutcome = await outcome.first().innerText();
    seen.refactorOutcomeIsWarning = await page.locator(TOASTS).filter({ hasText: /^Code Llama: / }).count() > 0;
    await page.waitForTimeout(500); // an applied edit is rendered by now
    seen.linesAfterRefactor = await editorLines(page);
    step('refactor');

    // The context menu offers the same actions on the selection.
    await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().click({ button: 'right' });
    const contextMenu = page.locator('.context-view .monaco-menu');
    await contextMenu.first().waitFor({ timeout: 10_000 });
    seen.contextMenu = (await contextMenu.first().innerText()).split('\n');
    await page.keyboard.press('Escape');
    step('context menu');

    // A broken interpreter setting, typed into the Settings editor: the server restarts, fails, and the user gets
    // one notification with a way out.
    await setSetting(page, 'codellama.pythonPath', '/nonexistent/bin/python3');
    const failure = page.locator(TOASTS).filter({ hasText: 'cannot run the server' });
    await failure.first().waitFor({ timeout: 30_000 });
    seen.failureToast = await failure.first().locator('.notification-list-item-message').innerText();
    seen.failureButtons = await failure.first().locator('.monaco-button').allInnerTexts();
    seen.statusFailed = await page.locator(`${STATUS} .codicon-error`).count() > 0;
    await page.screenshot({ path: path.join(args.artifacts, 'vscode-server-missing.png') });
    step('failure shown');

    // Clearing the setting (back to `python3` on PATH) brings the server back without reloading the window.
    await setSetting(page, 'codellama.pythonPath', '');
    await page.locator(`${STATUS} .codicon-sparkle`).waitFor({ timeout: 120_000 });
    seen.recovered = true;
    step('recovered');
}

/** Column 0 of line N (an indented blank line): ask for a suggestion (Alt+\\, Trigger Inline Suggestion), accept
 * it, save; the test reads the line from the file on disk. */
async function column0(page) {
    await goTo(page, `${args.line}:1`);
    const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text');
    seen.triggerAttempts = 0;
    for (;;) {
        seen.triggerAttempts += 1;
        await page.keyboard.press('Alt+Backslash');
        try {
            await ghost.first().waitFor({ timeout: seen.triggerAttempts < 3 ? 15_000 : 60_000 });
            break;
        } catch (e) {
            if (seen.triggerAttempts >= 3) throw e;
        }
    }
    seen.ghostText = (await ghost.allInnerTexts()).join('\n').replace(/\u00a0/g, ' ');
    step('ghost text at column 0');
    await page.screenshot({ path: path.join(args.artifacts, 'vscode-column0-ghost-text.png') });
    // In the leading whitespace Tab indents (VS Code leaves Tab to indentation there), and the command palette
    // takes focus from the editor, which hides the suggestion: the test's keybindings.json binds Ctrl+Alt+Shift+Enter
    // to editor.action.inlineSuggest.commit (Accept Inline Suggestion), as a user would bind a key.
    // The key is pressed again (counted) if the line is still blank: on a loaded machine the suggestion can be
    // asked for again (and shown anew) just as the key arrives.
    seen.acceptAttempts = 0;
    for (;;) {
        seen.acceptAttempts += 1;
        await page.keyboard.press(`${mod}+Alt+Shift+Enter`);
        await ghost.first().waitFor({ state: 'detached', timeout: 3_000 }).catch(() => {});
        seen.linesAfterAccept = await editorLines(page);
        if (seen.linesAfterAccept[Number(args.line) - 1]?.trim() || seen.acceptAttempts >= 3) break;
        seen.ghostBeforeRetry = (await ghost.allInnerTexts()).join('\n').replace(/\u00a0/g, ' ');
        await ghost.first().waitFor({ timeout: 15_000 }).catch(() => {});
    }
    await page.screenshot({ path: path.join(args.artifacts, 'vscode-column0-accepted.png') });
    // Save, and wait (up to 15 s) for line N on disk to change: closing the browser sooner can lose the save (this
    // workbench shows no dirty mark to wait on). The test asserts on what is on disk.
    await page.keyboard.press(`${mod}+S`);
    const onDisk = path.join(new URL(args.url).searchParams.get('folder'), args.file);
    const blank = async () => !(await readFile(onDisk, 'utf8')).split('\n')[Number(args.line) - 1]?.trim();
    for (const end = performance.now() + 15_000; (await blank()) && performance.now() < end;) {
        await page.waitForTimeout(200);
    }
    step('accepted and saved');
}

const browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    chromiumSandbox: false,
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
let failed;
const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
page.on('pageerror', e => (seen.pageErrors ??= []).push(String(e)));
try {
    await run(page);
} catch (e) {
    failed = e;
    seen.error = String(e.stack || e);
    await page.screenshot({ path: path.join(args.artifacts, 'vscode-failure.png') }).catch(() => {});
    seen.toastsAtFailure = await toastTexts(page).catch(() => []);
} finally {
    await browser.close();
}
process.stdout.write(JSON.stringify(seen) + '\n');
process.exit(failed ? 1 : 0);
