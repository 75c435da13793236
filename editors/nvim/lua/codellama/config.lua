--- Options: documented defaults, the user's table deep-merged over them, and a few type checks.
--- A bad option gets one message naming it and keeps the default (as the server does with its settings).

local M = {}

--- The server command: this repository's .venv when the plugin is loaded from a checkout, else PATH.
--- `--log-level warning` because Neovim logs every line a server writes to stderr as an error.
local function default_cmd()
  local here = debug.getinfo(1, 'S').source:sub(2) -- <root>/editors/nvim/lua/codellama/config.lua
  local root = vim.fn.fnamemodify(here, ':p:h:h:h:h:h')
  local venv = root .. '/.venv/bin/codellama-lsp'
  local exe = (vim.fn.executable(venv) == 1 and vim.fn.isdirectory(root .. '/lsp_server') == 1) and venv
    or 'codellama-lsp'
  return { exe, '--log-level', 'warning' }
end

---@class codellama.Config
M.defaults = {
  cmd = nil, ---@type string[]? nil = default_cmd()
  cmd_env = nil, ---@type table<string,string>?
  filetypes = { 'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact', 'go', 'rust', 'java', 'c', 'cpp' },
  root_markers = { '.git', 'pyproject.toml', 'setup.py', 'package.json', 'go.mod', 'Cargo.toml' },
  settings = {}, -- server settings (README "Settings"), sent as initializationOptions / didChangeConfiguration
  fallback = 'auto', -- 'auto': Neovim's vim.lsp.inline_completion on 0.12+; 'always': this plugin's ghost text
  manual = false, -- true: suggest only on keymaps.trigger (uses this plugin's ghost text)
  debounce_ms = 150, -- own ghost text only; Neovim's native path debounces by itself (200 ms)
  enabled = true, -- start with suggestions on (:CodeLlamaToggle flips it)
  hl_group = 'CodeLlamaSuggestion', -- linked to Comment unless you define it
  keymaps = { -- insert mode, buffers with the server attached; false = no mapping
    accept = '<Tab>',
    dismiss = '<C-]>',
    next = '<M-]>',
    prev = '<M-[>',
    accept_word = '<M-Right>',
    accept_line = '<M-C-Right>',
    trigger = '<M-\\>',
  },
}

local CHOICES = { fallback = { auto = true, always = true } }
local TYPES = {
  cmd = 'table', cmd_env = 'table', filetypes = 'table', root_markers = 'table', settings = 'table',
  fallback = 'string', manual = 'boolean', debounce_ms = 'number', enabled = 'boolean',
  hl_group = 'string', keymaps = 'table',
}

--- Tables merge key by key; lists (cmd, filetypes, ...) and scalars replace.
local function merge(base, over)
  if type(base) ~= 'table' or type(over) ~= 'table' or vim.islist(over) or vim.islist(base) and next(base) then
    return vim.deepcopy(over)
  end
  local out = vim.deepcopy(base)
  for k, v in pairs(over) do
    out[k] = merge(base[k], v)
  end
  return out
end

--- Merge `opts` over the defaults; returns the config and a list of problems (already replaced by defaults).
---@return codellama.Config, string[]
function M.resolve(opts)
  local cfg = merge(M.defaults, opts or {})
  local problems = {}
  for key, want in pairs(TYPES) do
    local v = cfg[key]
    local ok = v == nil and M.defaults[key] == nil or type(v) == want
    if ok and CHOICES[key] and not CHOICES[key][v] then
      ok = false
      want = table.concat(vim.tbl_keys(CHOICES[key]), ' | ')
    end
    if not ok then
      problems[#problems + 1] = ('option `%s` = %s: expected %s; using the default'):format(key, vim.inspect(v), want)
      cfg[key] = vim.deepcopy(M.defaults[key])
    end
  end
  for name, lhs in pairs(cfg.keymaps) do
    if lhs ~= false and type(lhs) ~= 'string' then
      problems[#problems + 1] = ('keymaps.%s: expected a key string or false'):format(name)
      cfg.keymaps[name] = M.defaults.keymaps[name] or false
    end
  end
  cfg.cmd = cfg.cmd or default_cmd()
  return cfg, problems
end

return M
