--- The language server: started once per Neovim for the configured filetypes, shared by every buffer.

local notify = require('codellama.notify')

local M = {}

M.NAME = 'codellama'
local has_011 = vim.fn.has('nvim-0.11') == 1

---@return vim.lsp.Client?
function M.get(bufnr)
  return vim.lsp.get_clients({ name = M.NAME, bufnr = bufnr })[1]
end

--- client:request on 0.11+, client.request on 0.10; returns the request id or nil.
function M.request(client, method, params, handler, bufnr)
  local ok, id
  if has_011 then
    ok, id = client:request(method, params, handler, bufnr)
  else
    ok, id = client.request(method, params, handler, bufnr)
  end
  return ok and id or nil
end

function M.cancel(client, id)
  if has_011 then
    client:cancel_request(id)
  else
    client.cancel_request(id)
  end
end

function M.request_sync(client, method, params, timeout_ms, bufnr)
  if has_011 then
    return client:request_sync(method, params, timeout_ms, bufnr)
  end
  return client.request_sync(method, params, timeout_ms, bufnr)
end

--- Send the settings to a running server (they apply to its next request, or reload the model).
function M.push_settings(settings)
  for _, client in ipairs(vim.lsp.get_clients({ name = M.NAME })) do
    local params = { settings = { codellama = settings } }
    if has_011 then
      client:notify('workspace/didChangeConfiguration', params)
    else
      client.notify('workspace/didChangeConfiguration', params)
    end
  end
end

local missing_reported = false

--- True when cfg.cmd can be run; otherwise one clear message (once per setup()).
local function server_found(cfg)
  if vim.fn.executable(cfg.cmd[1]) == 1 then
    return true
  end
  if not missing_reported then
    missing_reported = true
    notify.notify(
      ('server `%s` not found, so there are no suggestions. Install it (`pip install codellama-lsp`, or '
        .. 'scripts/setup.sh in a checkout) or set `cmd` in require("codellama").setup(). :checkhealth codellama'):format(
        cfg.cmd[1]
      ),
      vim.log.levels.ERROR,
      'server-missing'
    )
  end
  return false
end

--- Start the server for `bufnr`, or attach the buffer to the one already running (LspAttach follows).
---@param cfg codellama.Config
function M.start(bufnr, cfg)
  if vim.bo[bufnr].buftype ~= '' or not server_found(cfg) then
    return
  end
  local root = vim.fs.root(bufnr, cfg.root_markers) or vim.fn.getcwd()
  vim.lsp.start({
    name = M.NAME,
    cmd = cfg.cmd,
    cmd_env = cfg.cmd_env,
    root_dir = root,
    init_options = cfg.settings,
    settings = { codellama = cfg.settings },
    on_exit = function(code, signal)
      if code ~= 0 and signal == 0 then
        notify.notify(('server exited with code %d; see :LspLog'):format(code), vim.log.levels.ERROR, 'exit')
      end
    end,
  }, {
    bufnr = bufnr,
    -- One server (one model in memory) for the whole editor, whatever the buffer's project.
    reuse_client = function(client, config)
      return client.name == config.name
    end,
  })
end

--- setup() again: the next missing server is reported again.
function M.reset()
  missing_reported = false
end

return M
