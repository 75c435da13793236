/**
 * The language server's lifecycle: find the interpreter, start `python -m lsp_server` over stdio with
 * vscode-languageclient, pass settings through, watch `$/progress`, and turn every way of failing into one
 * notification that says what happened and how to fix it (never a bare "client is not running").
 */
import * as readline from 'node:readline';
import { performance } from 'node:perf_hooks';
import * as vscode from 'vscode';
import {
    CloseAction, CloseHandlerResult, DidChangeConfigurationNotification, ErrorAction, ErrorHandlerResult,
    LanguageClient, LanguageClientOptions, RevealOutputChannelOn, ServerOptions, State,
} from 'vscode-languageclient/node';
import { aroundCommand, ShowMarkdown } from './actions';
import { findInterpreter, NoInterpreterError } from './python';
import { ClientSettings, languageEnabled, readClientSettings, serverSettings } from './settings';
import { Status } from './status';

const STDERR_TAIL_LINES = 40;
const MAX_CRASHES = 3; // restarts after a crash within CRASH_WINDOW_MS before giving up
const CRASH_WINDOW_MS = 3 * 60_000;
const SERVER_LOG_LINE = /^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$/; // lsp_server/cli.py's log format

export interface ModelStats {
    model_state?: 'loading' | 'ready' | 'error';
    model_error?: string | null;
    model?: { name: string; device: string; dtype: string } | null;
}

export class Server implements vscode.Disposable {
    private client?: LanguageClient;
    private settings: ClientSettings = readClientSettings();
    private readonly stderrTail: string[] = [];
    private crashes: number[] = [];
    private starting = false;
    private stopping = false;

    constructor(
        private readonly context: vscode.ExtensionContext,
        private readonly log: vscode.LogOutputChannel,
        private readonly status: Status,
        private readonly showMarkdown: ShowMarkdown,
    ) {
        this.status.settings(this.settings.enabled, this.settings.trigger === 'manual');
    }

    /** The language client while the server runs (for the context-menu commands). */
    get languageClient(): LanguageClient | undefined {
        return this.running ? this.client : undefined;
    }

    get running(): boolean {
        return this.client?.state === State.Running;
    }

    async start(): Promise<void> {
        this.starting = true;
        this.stderrTail.length = 0;
        this.status.starting('starting the server');
        try {
            const python = await findInterpreter(this.settings.pythonPath, this.context.extensionPath);
            this.log.info(`starting the server: ${python} -m lsp_server`);
            this.client = new LanguageClient('codellama', 'Code Llama', this.serverOptions(python), this.clientOptions());
            await this.client.start();
            this.starting = false;
            await this.refreshModelState();
        } catch (error) {
            this.starting = false;
            await this.dropClient();
            this.fail(error instanceof NoInterpreterError ? error.message : `the server did not start: ${this.why(error)}`,
                error instanceof NoInterpreterError);
        }
    }

    async stop(): Promise<void> {
        this.stopping = true;
        try {
            await this.dropClient();
        } finally {
            this.stopping = false;
        }
    }

    async restart(): Promise<void> {
        await this.stop();
        this.crashes = [];
        await this.start();
    }

    /** A custom request to the server, or a notification saying why there is no server to ask. */
    async request<T>(method: string): Promise<T | undefined> {
        if (!this.client || !this.running) {
            const choice = await vscode.window.showWarningMessage('Code Llama: the server is not running.', 'Restart Server', 'Show Log');
            if (choice === 'Restart Server') {
                await this.restart();
            } else if (choice === 'Show Log') {
                this.log.show(true);
            }
            return undefined;
        }
        return this.client.sendRequest<T>(method, {});
    }

    /** Settings changed: the interpreter needs a new process; everything else goes to the running server. */
    async settingsChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
        const pythonChanged = this.settings.pythonPath !== readClientSettings().pythonPath;
        this.settings = readClientSettings();
        this.status.settings(this.settings.enabled, this.settings.trigger === 'manual');
        if (pythonChanged || (this.status.isError && event.affectsConfiguration('codellama.model'))) {
            await this.restart();
        } else if (this.client && this.running) {
            await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { codellama: serverSettings() } });
        }
    }

    dispose(): void {
        void this.stop();
    }

    private serverOptions(python: string): ServerOptions {
        const cwd = vscode.workspace.workspaceFolders?.find(f => f.uri.scheme === 'file')?.uri.fsPath;
        // No `transport`: with TransportKind.stdio the client would append `--stdio`, which the server does not take.
        return { command: python, args: ['-m', 'lsp_server'], options: { cwd, env: { ...process.env, PYTHONUNBUFFERED: '1' } } };
    }

    private clientOptions(): LanguageClientOptions {
        return {
            documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
            initializationOptions: serverSettings(),
            outputChannel: this.log,
            // Failed requests go to the log, never to a pop-up while typing; start failures are reported by fail().
            revealOutputChannelOn: RevealOutputChannelOn.Never,
            initializationFailedHandler: () => false,
            errorHandler: { error: (_e, _m, count) => this.onError(count), closed: () => this.onClosed() },
            stdioOptions: { stdout: input => this.forward(input), stderr: input => this.forward(input) },
            middleware: {
                executeCommand: (command, args, next) => aroundCommand(command, args, next, this.showMarkdown),
                provideInlineCompletionItems: async (document, position, context, token, next) => {
                    this.log.trace(`inline completion asked (${context.triggerKind === 0 ? 'invoked' : 'automatic'}) at ${position.line + 1}:${position.character + 1}`);
                    if (!this.wanted(document, context)) {
                        return null;
                    }
                    const started = performance.now();
                    const result = await next(document, position, context, token);
                    const items = Array.isArray(result) ? result : result?.items;
                    if (!token.isCancellationRequested && items && items.length > 0) {
                        this.status.latency(performance.now() - started);
                    }
                    return result;
                },
                handleWorkDoneProgress: (token, params, next) => {
                    if (params.kind === 'begin') {
                        this.status.loading(params.message ?? params.title, params.percentage);
                    } else if (params.kind === 'report') {
                        this.status.loading(params.message, params.percentage);
                    } else {
                        void this.refreshModelState();
                    }
                    next(token, params);
                },
            },
        };
    }

    /** Whether to ask the server at all: off, language turned off, or manual mode and not asked. */
    private wanted(document: vscode.TextDocument, context: vscode.InlineCompletionContext): boolean {
        const s = this.settings;
        if (!s.enabled || !languageEnabled(s, document.languageId)) {
            return false;
        }
        return s.trigger === 'automatic' || context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
    }

    /** The model's state after loading (or failing to): from `codellama/stats`. */
    private async refreshModelState(): Promise<void> {
        if (!this.client || !this.running) {
            return;
        }
        try {
            const stats = await this.client.sendRequest<ModelStats>('codellama/stats', {});
            if (stats.model_state === 'ready') {
                this.status.ready(stats.model ? `${stats.model.name} on ${stats.model.device}` : undefined);
            } else if (stats.model_state === 'error') {
                this.status.error(stats.model_error ?? 'the model did not load'); // the server already showed it once
            } else {
                this.status.loading(undefined, undefined);
            }
        } catch (error) {
            this.log.warn(`codellama/stats failed: ${this.why(error)}`);
        }
    }

    private onError(count: number | undefined): ErrorHandlerResult {
        return { action: count !== undefined && count <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true };
    }

    /** The server process went away: restart it a few times, then stop and say why. */
    private onClosed(): CloseHandlerResult {
        if (this.stopping || this.starting) {
            return { action: CloseAction.DoNotRestart, handled: true }; // start() reports its own failure
        }
        const now = Date.now();
        this.crashes = [...this.crashes.filter(t => now - t < CRASH_WINDOW_MS), now];
        if (this.crashes.length <= MAX_CRASHES) {
            this.log.warn(`the server stopped; restarting it (${this.crashes.length} of ${MAX_CRASHES})`);
            this.status.starting('restarting the server after it stopped');
            return { action: CloseAction.Restart, handled: true };
        }
        this.fail(`the server stopped ${this.crashes.length} times in 3 minutes and was not restarted (${this.lastError()})`, false);
        return { action: CloseAction.DoNotRestart, handled: true };
    }

    private async dropClient(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        if (client) {
            try {
                await client.dispose(3000); // shutdown + exit; the client kills the process if it lingers
            } catch (error) {
                this.log.warn(`stopping the server: ${this.why(error)}`);
            }
        }
    }

    /** One notification per failure, with the way out. */
    private fail(reason: string, interpreter: boolean): void {
        this.status.error(reason);
        this.log.error(reason);
        const actions = interpreter ? ['Set Python Path', 'How to Fix', 'Show Log'] : ['Show Log', 'How to Fix', 'Restart Server'];
        void vscode.window.showErrorMessage(`Code Llama: ${reason}`, ...actions).then(choice => {
            if (choice === 'Set Python Path') {
                void vscode.commands.executeCommand('workbench.action.openSettings', 'codellama.pythonPath');
            } else if (choice === 'How to Fix') {
                const readme = vscode.Uri.joinPath(this.context.extensionUri, 'README.md');
                void vscode.commands.executeCommand('markdown.showPreview', readme);
            } else if (choice === 'Show Log') {
                this.log.show(true);
            } else if (choice === 'Restart Server') {
                void this.restart();
            }
        });
    }

    /** The server's log lines (stderr) into the output channel at their own level, keeping the last few. */
    private forward(input: NodeJS.ReadableStream): void {
        let level = 'ERROR'; // before logging is set up, stderr carries tracebacks
        readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', line => {
            this.stderrTail.push(line);
            if (this.stderrTail.length > STDERR_TAIL_LINES) {
                this.stderrTail.shift();
            }
            const match = SERVER_LOG_LINE.exec(line);
            level = match ? match[1] : level;
            const text = match ? match[2] : line;
            if (level === 'DEBUG') {
                this.log.debug(text);
            } else if (level === 'INFO') {
                this.log.info(text);
            } else if (level === 'WARNING') {
                this.log.warn(text);
            } else {
                this.log.error(text);
            }
        });
    }

    private why(error: unknown): string {
        const message = error instanceof Error ? error.message : String(error);
        const last = this.lastError();
        return last && !message.includes(last) ? `${message} (${last})` : message;
    }

    /** The server's last error-looking stderr line: usually the exception that stopped it. */
    private lastError(): string {
        const lines = this.stderrTail.filter(l => l.trim());
        const error = [...lines].reverse().find(l => /Error|Exception|error:/.test(l));
        return (error ?? lines[lines.length - 1] ?? 'no output; see the log').trim().slice(0, 300);
    }
}
