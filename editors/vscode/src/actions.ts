/**
 * Code actions (explain / refactor / add docstring): the server lists them in the light bulb and runs them as
 * `workspace/executeCommand`; this module adds what only the editor can do around those commands: ask for the
 * refactor instruction, open the explanation as a markdown preview beside the code, report the outcome, and
 * offer the same actions in the editor's context menu.
 */
import * as vscode from 'vscode';
import { CodeAction, CodeActionRequest, LanguageClient } from 'vscode-languageclient/node';

export const EXPLAIN = 'codellama.explain';
export const REFACTOR = 'codellama.refactor';
export const DOCSTRING = 'codellama.docstring';

interface Explanation {
    markdown?: string;
}

interface EditOutcome {
    applied?: boolean;
    message?: string;
}

/** Where explanations are shown: read-only `codellama:` documents (see extension.ts). */
export type ShowMarkdown = (name: string, markdown: string) => Promise<void>;

/** vscode-languageclient middleware for executeCommand: runs around every server command. */
export async function aroundCommand(command: string, args: unknown[], next: (command: string, args: unknown[]) => Promise<unknown>,
    showMarkdown: ShowMarkdown): Promise<unknown> {
    if (command === REFACTOR && args.length === 2) {
        const instruction = await vscode.window.showInputBox({
            title: 'Refactor with Code Llama',
            prompt: 'What should change? Leave empty for a general clean-up.',
            placeHolder: 'e.g. use a list comprehension',
        });
        if (instruction === undefined) {
            return undefined; // Escape: nothing is asked of the model
        }
        args = instruction ? [...args, instruction] : args;
    }
    const result = await next(command, args);
    if (command === EXPLAIN) {
        const markdown = (result as Explanation | undefined)?.markdown;
        if (markdown) {
            await showMarkdown('Explanation.md', markdown);
        }
    } else if (command === REFACTOR || command === DOCSTRING) {
        const outcome = (result ?? {}) as EditOutcome;
        const message = `Code Llama: ${outcome.message ?? (outcome.applied ? 'done' : 'nothing changed')}`;
        if (outcome.applied) {
            vscode.window.setStatusBarMessage(message, 5000);
        } else {
            void vscode.window.showWarningMessage(message);
        }
    }
    return result;
}

/** The context-menu commands: the same server commands on the current selection (or the enclosing definition). */
export function selectionCommand(serverCommand: string, client: () => LanguageClient | undefined): () => Promise<void> {
    return async () => {
        const editor = vscode.window.activeTextEditor;
        const c = client();
        if (!editor) {
            return;
        }
        if (!c) {
            void vscode.window.showWarningMessage('Code Llama: the server is not running.');
            return;
        }
        // Ask the server which range the action covers (an empty selection means the enclosing definition).
        const actions = await c.sendRequest(CodeActionRequest.type, {
            textDocument: { uri: c.code2ProtocolConverter.asUri(editor.document.uri) },
            range: c.code2ProtocolConverter.asRange(editor.selection),
            context: { diagnostics: [], only: ['refactor'] },
        });
        const action = (actions ?? []).find(a => 'command' in a && a.command !== undefined
            && (typeof a.command === 'string' ? a.command : a.command.command) === serverCommand) as CodeAction | undefined;
        if (!action?.command) {
            void vscode.window.showInformationMessage('Code Llama: select some code (or put the cursor in a function or class) first.');
            return;
        }
        await vscode.commands.executeCommand(serverCommand, ...(action.command.arguments ?? []));
    };
}
