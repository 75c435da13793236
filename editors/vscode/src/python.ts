/**
 * Finding the Python interpreter that runs the server (`python -m lsp_server`).
 *
 * Order: the `codellama.pythonPath` setting (and only it, when set); else `.venv` in each workspace folder
 * (trusted workspaces only: it is the workspace's own executable); else the `.venv` of the checkout this
 * extension runs from (when it is loaded from `editors/vscode` in the repository); else `python3` on PATH.
 * Each candidate is asked whether it can import `lsp_server`, so a wrong interpreter is reported by name
 * before the language client starts, instead of as a server that dies on start.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';

const WINDOWS = process.platform === 'win32';
const VENV_PYTHON = WINDOWS ? ['.venv', 'Scripts', 'python.exe'] : ['.venv', 'bin', 'python'];
const CHECK = 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec("lsp_server") else 3)';
const CHECK_TIMEOUT_MS = 20_000;

/** No candidate could run the server; `tried` says why for each one. */
export class NoInterpreterError extends Error {
    constructor(readonly tried: string[], readonly fromSetting: boolean) {
        super(fromSetting
            ? `codellama.pythonPath cannot run the server: ${tried.join('; ')}`
            : `no Python with codellama-lsp installed was found (tried ${tried.join('; ')})`);
    }
}

export async function findInterpreter(setting: string, extensionPath: string): Promise<string> {
    const candidates = setting ? [expand(setting)] : defaultCandidates(extensionPath);
    const tried: string[] = [];
    for (const candidate of candidates) {
        const problem = await problemWith(candidate);
        if (problem === undefined) {
            return candidate;
        }
        tried.push(`${candidate}: ${problem}`);
    }
    throw new NoInterpreterError(tried, Boolean(setting));
}

function defaultCandidates(extensionPath: string): string[] {
    const folders = vscode.workspace.isTrusted ? vscode.workspace.workspaceFolders ?? [] : [];
    const candidates = folders.filter(f => f.uri.scheme === 'file').map(f => path.join(f.uri.fsPath, ...VENV_PYTHON));
    const checkout = path.resolve(extensionPath, '..', '..');
    if (fs.existsSync(path.join(checkout, 'lsp_server'))) {
        candidates.push(path.join(checkout, ...VENV_PYTHON));
    }
    candidates.push(WINDOWS ? 'python' : 'python3');
    return [...new Set(candidates)];
}

/** `~` and `${workspaceFolder}` in the setting, as users write them. */
function expand(setting: string): string {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';
    return setting.replace(/^~(?=$|[\\/])/, os.homedir()).replace(/\$\{workspaceFolder\}/g, folder);
}

/** Why `python` cannot run the server, or undefined when it can. */
function problemWith(python: string): Promise<string | undefined> {
    if (path.isAbsolute(python) && !fs.existsSync(python)) {
        return Promise.resolve('not found');
    }
    return new Promise(resolve => {
        execFile(python, ['-c', CHECK], { timeout: CHECK_TIMEOUT_MS }, (error, _stdout, stderr) => {
            if (!error) {
                resolve(undefined);
            } else if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
                resolve('not found');
            } else if (error.code === 3) {
                resolve('cannot import lsp_server (codellama-lsp is not installed there)');
            } else {
                resolve((stderr.trim().split('\n').pop() || error.message).slice(0, 300));
            }
        });
    });
}
