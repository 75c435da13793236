/**
 * The extension's settings ("codellama.*" in package.json): the few the client acts on itself, and the rest,
 * which go to the server unchanged as its `initializationOptions` and `workspace/didChangeConfiguration`.
 */
import * as vscode from 'vscode';
import { NULLABLE_KEYS, SERVER_KEYS } from './serverKeys';

export const SECTION = 'codellama';

/** Settings the client acts on: which interpreter to start, and whether to ask for a suggestion at all. */
export interface ClientSettings {
    pythonPath: string;
    enabled: boolean;
    languages: Record<string, boolean>;
    trigger: 'automatic' | 'manual';
}

export function readClientSettings(): ClientSettings {
    const config = vscode.workspace.getConfiguration(SECTION);
    return {
        pythonPath: config.get<string>('pythonPath', '').trim(),
        enabled: config.get<boolean>('enabled', true),
        languages: config.get<Record<string, boolean>>('languages', { '*': true }),
        trigger: config.get<string>('trigger') === 'manual' ? 'manual' : 'automatic',
    };
}

/**
 * What the server gets: every server setting with its current value (defaults included, so a setting that the
 * user removes goes back to the default on the server too). `enabled` is sent as well, so the server's stats
 * agree with the client, which already stops asking when it is off.
 */
export function serverSettings(): Record<string, unknown> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const settings: Record<string, unknown> = {};
    for (const key of SERVER_KEYS) {
        settings[key] = config.get(key);
    }
    for (const key of NULLABLE_KEYS) {
        settings[key] = settings[key] || null; // "" means the default model (null on the server)
    }
    settings.enabled = config.get<boolean>('enabled', true);
    return settings;
}

/** Whether suggestions are wanted in documents of this language (`"*"` is the default for unlisted ones). */
export function languageEnabled(settings: ClientSettings, languageId: string): boolean {
    return settings.languages[languageId] ?? settings.languages['*'] ?? true;
}
