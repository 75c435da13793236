/**
 * The status-bar item: starting / loading the model (with the server's `$/progress` percentage) / ready (with
 * the last suggestion's latency) / off / error (click for the log). It changes only when the state does or a
 * suggestion is shown, never on a keystroke that shows nothing.
 */
import * as vscode from 'vscode';

type State =
    | { kind: 'starting'; detail: string }
    | { kind: 'loading'; detail: string; percent?: number }
    | { kind: 'ready'; model?: string }
    | { kind: 'error'; detail: string };

export class Status implements vscode.Disposable {
    private readonly item = vscode.window.createStatusBarItem('codellama.status', vscode.StatusBarAlignment.Right, 100);
    private state: State = { kind: 'starting', detail: 'starting the server' };
    private latencyMs?: number;
    private enabled = true;
    private manual = false;

    constructor() {
        this.item.name = 'Code Llama';
        this.render();
        this.item.show();
    }

    starting(detail: string): void {
        this.state = { kind: 'starting', detail };
        this.render();
    }

    loading(detail: string | undefined, percent: number | undefined): void {
        const previous = this.state.kind === 'loading' ? this.state : undefined;
        this.state = { kind: 'loading', detail: detail ?? previous?.detail ?? 'loading the model', percent: percent ?? previous?.percent };
        this.render();
    }

    ready(model?: string): void {
        this.state = { kind: 'ready', model };
        this.render();
    }

    error(detail: string): void {
        this.state = { kind: 'error', detail };
        this.render();
    }

    get isError(): boolean {
        return this.state.kind === 'error';
    }

    /** A suggestion was shown after `ms` milliseconds. */
    latency(ms: number): void {
        this.latencyMs = ms;
        if (this.state.kind === 'ready') {
            this.render();
        }
    }

    settings(enabled: boolean, manual: boolean): void {
        this.enabled = enabled;
        this.manual = manual;
        this.render();
    }

    dispose(): void {
        this.item.dispose();
    }

    private render(): void {
        const s = this.state;
        const item = this.item;
        item.backgroundColor = undefined;
        item.command = 'codellama.menu';
        if (s.kind === 'error') {
            item.text = '$(error) Code Llama';
            item.tooltip = `Code Llama: ${s.detail}\nClick for the log.`;
            item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
            item.command = 'codellama.showLog';
        } else if (s.kind === 'starting') {
            item.text = '$(loading~spin) Code Llama';
            item.tooltip = `Code Llama: ${s.detail}`;
        } else if (s.kind === 'loading') {
            item.text = `$(loading~spin) Code Llama${s.percent === undefined ? '' : ` ${s.percent}%`}`;
            item.tooltip = `Code Llama: loading the model: ${s.detail}`;
        } else if (!this.enabled) {
            item.text = '$(circle-slash) Code Llama';
            item.tooltip = 'Code Llama: inline completions are off (Code Llama: Toggle Inline Completions).';
        } else {
            const latency = this.latencyMs === undefined ? '' : ` ${Math.round(this.latencyMs)} ms`;
            item.text = `$(sparkle) Code Llama${latency}${this.manual ? ' (manual)' : ''}`;
            item.tooltip = [
                `Code Llama: ready${s.model ? ` (${s.model})` : ''}.`,
                this.latencyMs === undefined ? 'No suggestion shown yet.' : `Last suggestion: ${Math.round(this.latencyMs)} ms from request to answer.`,
                this.manual ? 'Manual trigger: Alt+\\ or Code Llama: Suggest Here.' : '',
                'Click for commands.',
            ].filter(Boolean).join('\n');
        }
    }
}
