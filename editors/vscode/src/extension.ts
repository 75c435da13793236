/**
 * Code Llama inline completions for VS Code: a thin client for the codellama-lsp server. `activate` wires the
 * server, the status bar, the commands and settings changes; `deactivate` stops the server. All completion
 * logic lives in the server; VS Code renders its `textDocument/inlineCompletion` answers as ghost text.
 */
import * as vscode from 'vscode';
import { EXPLAIN, REFACTOR, selectionCommand } from './actions';
import { Server } from './server';
import { readClientSettings, SECTION } from './settings';
import { Status } from './status';

let server: Server | undefined;

/** Read-only views (`codellama:` URIs) for the stats and the last prompt: no untitled buffer asks to be saved. */
const SCHEME = 'codellama';
const views = new Map<string, string>();
const viewChanged = new vscode.EventEmitter<vscode.Uri>();

export function activate(context: vscode.ExtensionContext): void {
    const log = vscode.window.createOutputChannel('Code Llama', { log: true });
    const status = new Status();
    server = new Server(context, log, status, showMarkdown);
    const s = server;
    context.subscriptions.push(log, status, s,
        command('codellama.toggle', toggle),
        command('codellama.suggest', () => vscode.commands.executeCommand('editor.action.inlineSuggest.trigger')),
        command('codellama.showLastPrompt', () => showLastPrompt(s)),
        command('codellama.showStats', () => showStats(s)),
        command('codellama.restart', () => s.restart()),
        command('codellama.showLog', () => log.show(true)),
        command('codellama.menu', menu),
        command('codellama.explainSelection', selectionCommand(EXPLAIN, () => s.languageClient)),
        command('codellama.refactorSelection', selectionCommand(REFACTOR, () => s.languageClient)),
        viewChanged,
        vscode.workspace.registerTextDocumentContentProvider(SCHEME, {
            onDidChange: viewChanged.event,
            provideTextDocumentContent: uri => views.get(uri.path) ?? '',
        }),
        vscode.workspace.onDidChangeConfiguration(e => e.affectsConfiguration(SECTION) ? s.settingsChanged(e) : undefined),
    );
    void s.start();
}

export function deactivate(): Promise<void> | undefined {
    return server?.stop();
}

function command(id: string, run: () => unknown): vscode.Disposable {
    return vscode.commands.registerCommand(id, run);
}

/** Flip `codellama.enabled` where it is set (workspace or user settings). */
async function toggle(): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const inWorkspace = config.inspect<boolean>('enabled')?.workspaceValue !== undefined;
    const target = inWorkspace ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    const enabled = !readClientSettings().enabled;
    await config.update('enabled', enabled, target);
    vscode.window.setStatusBarMessage(`Code Llama: inline completions ${enabled ? 'on' : 'off'}`, 3000);
}

interface LastPrompt {
    text?: string;
    ids?: number[];
    mode?: string;
    healed?: string | null; // the text token healing backed off, null when none
    crossfile?: string[];
}

async function showLastPrompt(s: Server): Promise<void> {
    const prompt = await s.request<LastPrompt>('codellama/lastPrompt');
    if (prompt === undefined) {
        return;
    }
    if (!prompt.text) {
        void vscode.window.showInformationMessage('Code Llama: no prompt yet. Type in a file first.');
        return;
    }
    const header = [
        `# codellama/lastPrompt: ${prompt.mode ?? '?'} mode, ${prompt.ids?.length ?? '?'} tokens, token healing ${prompt.healed ? 'on' : 'off'}`,
        `# cross-file snippets: ${prompt.crossfile?.length ? prompt.crossfile.join(', ') : 'none'}`,
        '# The exact text sent to the model follows (control tokens shown as pieces).',
        '',
    ].join('\n');
    await show('Last Prompt.txt', header + prompt.text);
}

async function showStats(s: Server): Promise<void> {
    const stats = await s.request<Record<string, unknown>>('codellama/stats');
    if (stats !== undefined) {
        // What users look for first: is the model loaded, and how fast is it.
        const { model_state, model, model_error, latency_ms_p50, latency_ms_p95, ...rest } = stats;
        const ordered = { model_state, model, model_error, latency_ms_p50, latency_ms_p95, ...rest };
        await show('Stats.json', JSON.stringify(ordered, null, 2));
    }
}

/** Markdown rendered beside the code (the explanation of a selection). */
async function showMarkdown(name: string, markdown: string): Promise<void> {
    const uri = vscode.Uri.from({ scheme: SCHEME, path: name });
    views.set(uri.path, markdown);
    viewChanged.fire(uri);
    await vscode.commands.executeCommand('markdown.showPreviewToSide', uri);
}

/** Show `content` read-only beside the code; the file name's extension picks the language. */
async function show(name: string, content: string): Promise<void> {
    const uri = vscode.Uri.from({ scheme: SCHEME, path: name });
    views.set(uri.path, content);
    viewChanged.fire(uri);
    const document = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(document, { preview: true, viewColumn: vscode.ViewColumn.Beside });
}

/** The status-bar item's click: every command in one list. */
async function menu(): Promise<void> {
    const enabled = readClientSettings().enabled;
    const items: (vscode.QuickPickItem & { command: string })[] = [
        { label: enabled ? '$(circle-slash) Turn inline completions off' : '$(check) Turn inline completions on', command: 'codellama.toggle' },
        { label: '$(sparkle) Suggest here', description: 'Alt+\\', command: 'codellama.suggest' },
        { label: '$(graph) Show stats', command: 'codellama.showStats' },
        { label: '$(note) Show the last prompt', command: 'codellama.showLastPrompt' },
        { label: '$(output) Show the log', command: 'codellama.showLog' },
        { label: '$(debug-restart) Restart the server', command: 'codellama.restart' },
        { label: '$(gear) Settings', command: 'workbench.action.openSettings' },
    ];
    const picked = await vscode.window.showQuickPick(items, { title: 'Code Llama' });
    if (picked) {
        await vscode.commands.executeCommand(picked.command, ...(picked.command === 'workbench.action.openSettings' ? ['codellama'] : []));
    }
}
