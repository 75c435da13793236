// Generated from lsp_server/settings.py by scripts/gen_settings.py: do not edit, run that script.
/** Settings the server reads, sent under the same camelCase names as in its README. */
export const SERVER_KEYS = [
    'model', 'quantization', 'device', 'dtype', 'fimMode', 'prefixTokens', 'suffixTokens', 'crossFileContext',
    'crossFileTokens', 'maxNewTokens', 'timeBudgetMs', 'alternatives', 'suggestions', 'contextWindow', 'threads',
    'decode', 'speculative', 'prefetch', 'instructModel', 'instructTokens', 'instructMaxNewTokens', 'backend',
    'endpoint', 'apiKeyEnv', 'requestTimeoutMs', 'tokenizer', 'engineSlots', 'instructEndpoint',
] as const;

/** Text settings whose empty value ("") is sent as null. */
export const NULLABLE_KEYS = [
    'model', 'instructModel', 'endpoint', 'apiKeyEnv', 'tokenizer', 'instructEndpoint',
] as const;
