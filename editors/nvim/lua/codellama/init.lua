--- codellama.nvim: inline completions (ghost text) from codellama-lsp.
---
--- setup() starts the server for the configured filetypes and passes the settings through; Neovim 0.12+
--- renders the suggestions itself (vim.lsp.inline_completion), older versions get this plugin's ghost
--- text (ghost.lua).  All completion logic lives in the server.  See :help codellama.

local config = require('codellama.config')
local client = require('codellama.client')
local notify = require('codellama.notify')

local M = {}

---@type codellama.Config?
M.config = nil
local backend ---@type table native.lua or ghost.lua
local attached = {} ---@type table<integer, true>

local function use_native(cfg)
  return cfg.fallback == 'auto' and not cfg.manual and require('codellama.native').available()
end

--- Which renderer is in use: 'native' or 'ghost' (nil before setup).
function M.path()
  return backend and (backend == require('codellama.ghost') and 'ghost' or 'native') or nil
end

local function can(bufnr, action)
  if action == 'trigger' then
    return M.config.enabled and backend == require('codellama.ghost')
  end
  return M.config.enabled and backend.visible(bufnr)
end

local function on_attach(bufnr)
  attached[bufnr] = true
  backend.attach(bufnr, M.config.enabled)
  require('codellama.keymaps').set(bufnr, M.config.keymaps, can)
end

local function on_detach(bufnr)
  attached[bufnr] = nil
  backend.detach(bufnr)
  require('codellama.keymaps').clear(bufnr, M.config.keymaps)
end

--- Start (or join) the server in every loaded buffer of a configured filetype.
local function start_all()
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
      client.start(bufnr, M.config)
    end
  end
end

local function autocmds()
  local group = vim.api.nvim_create_augroup('codellama', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(ev)
      client.start(ev.buf, M.config)
    end,
  })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(ev)
      local c = vim.lsp.get_client_by_id(ev.data.client_id)
      if c and c.name == client.NAME then
        on_attach(ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(ev)
      local c = vim.lsp.get_client_by_id(ev.data.client_id)
      if c and c.name == client.NAME and attached[ev.buf] then
        on_detach(ev.buf)
      end
    end,
  })
end

--- Configure and start.  Calling it again applies the new options; changed `settings` are sent to the
--- running server with workspace/didChangeConfiguration.
---@param opts? table see :help codellama-config
function M.setup(opts)
  if vim.fn.has('nvim-0.10') == 0 then
    notify.notify('needs Neovim 0.10 or newer', vim.log.levels.ERROR)
    return
  end
  notify.reset()
  client.reset()
  local cfg, problems = config.resolve(opts)
  for _, problem in ipairs(problems) do
    notify.notify(problem, vim.log.levels.ERROR)
  end
  local old = M.config
  for bufnr in pairs(attached) do -- keymaps and renderer may change: detach, re-attach below
    on_detach(bufnr)
  end
  M.config = cfg
  backend = use_native(cfg) and require('codellama.native') or require('codellama.ghost')
  require('codellama.ghost').configure(cfg)
  vim.api.nvim_set_hl(0, 'CodeLlamaSuggestion', { link = 'Comment', default = true })
  require('codellama.actions').register()
  autocmds()
  if old and not vim.deep_equal(old.settings, cfg.settings) then
    client.push_settings(cfg.settings)
  end
  for _, c in ipairs(vim.lsp.get_clients({ name = client.NAME })) do
    for bufnr in pairs(c.attached_buffers) do
      on_attach(bufnr)
    end
  end
  start_all()
end

--- Change server settings at run time (merged over the current ones).
function M.update_settings(settings)
  M.setup(vim.tbl_deep_extend('force', M.config or {}, { settings = settings }))
end

--- Run a keymap action in the current buffer: accept, accept_word, accept_line, dismiss, next, prev,
--- trigger.  Returns false when there was nothing to act on (use it in your own mappings).
function M.run(action)
  local bufnr = vim.api.nvim_get_current_buf()
  if not backend or not attached[bufnr] then
    return false
  end
  if action == 'accept' or action == 'accept_word' or action == 'accept_line' then
    return backend.accept(bufnr, action == 'accept' and 'all' or action:sub(8)) and true or false
  elseif action == 'dismiss' then
    return backend.dismiss(bufnr)
  elseif action == 'next' or action == 'prev' then
    return backend.cycle(bufnr, action == 'next' and 1 or -1)
  elseif action == 'trigger' then
    return require('codellama.ghost').trigger(bufnr) or true
  end
  error('codellama: unknown action ' .. tostring(action))
end

--- Whether a suggestion is shown in the current buffer.
function M.visible()
  local bufnr = vim.api.nvim_get_current_buf()
  return backend ~= nil and attached[bufnr] ~= nil and backend.visible(bufnr)
end

--- Suggestions on / off (the server keeps running).
function M.toggle(enabled)
  if not M.config then
    notify.notify('call require("codellama").setup() first', vim.log.levels.WARN)
    return
  end
  if type(enabled) ~= 'boolean' then
    enabled = not M.config.enabled
  end
  M.config.enabled = enabled
  require('codellama.ghost').configure(M.config)
  if M.path() == 'native' then
    require('codellama.native').set_enabled(vim.tbl_keys(attached), enabled)
  end
  vim.notify('codellama: suggestions ' .. (enabled and 'on' or 'off'), vim.log.levels.INFO)
end

M.stats = function()
  require('codellama.commands').stats()
end
M.last_prompt = function()
  require('codellama.commands').last_prompt()
end

return M
