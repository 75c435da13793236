--- :checkhealth codellama: Neovim version and renderer, the server command, and (while the server runs)
--- the model's state and the latency it measured.

local M = {}

local function check_neovim(h, codellama)
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.10') == 0 then
    h.error('Neovim ' .. version .. ': 0.10 or newer is needed')
    return
  end
  local path = codellama.path()
  if not path then
    h.warn('Neovim ' .. version .. ": setup() not called", { 'Add require("codellama").setup({}) to your config' })
  elseif path == 'native' then
    h.ok('Neovim ' .. version .. ': suggestions rendered by vim.lsp.inline_completion')
  else
    h.ok('Neovim ' .. version .. ": suggestions rendered by this plugin's ghost text")
  end
  if codellama.config and not codellama.config.enabled then
    h.warn('suggestions are off (:CodeLlamaToggle)')
  end
end

local function check_server_command(h, cfg)
  local exe = cfg.cmd[1]
  if vim.fn.executable(exe) == 1 then
    h.ok(('server found: %s'):format(vim.fn.exepath(exe)))
    return true
  end
  h.error(('server not found: `%s`'):format(exe), {
    'pip install codellama-lsp (into a Python on PATH), or scripts/setup.sh in a checkout',
    'or set `cmd` in require("codellama").setup({ cmd = { "/path/to/codellama-lsp" } })',
  })
  return false
end

local function check_running(h, c)
  local client = require('codellama.client')
  local t0 = vim.uv.hrtime()
  local answer = client.request_sync(c, 'codellama/stats', vim.empty_dict(), 5000)
  local rtt_ms = (vim.uv.hrtime() - t0) / 1e6
  if not answer or answer.err or not answer.result then
    h.error('server running (client ' .. c.id .. ') but codellama/stats did not answer within 5 s')
    return
  end
  local s = answer.result
  h.ok(('server running (client %d), codellama/stats round trip %.1f ms'):format(c.id, rtt_ms))
  if s.model_state == 'ready' and type(s.model) == 'table' then
    h.ok(('model loaded: %s on %s, %s (loaded in %s ms)'):format(s.model.name, s.model.device, s.model.dtype,
      tostring(s.model.load_ms)))
  elseif s.model_state == 'loading' then
    h.info('model loading')
  else
    h.error('model failed to load: ' .. tostring(s.model_error), { 'Check the `model` setting; see :LspLog' })
  end
  if (s.completions or 0) > 0 then
    h.ok(('latency per suggestion: p50 %.1f ms, p95 %.1f ms over %d requests'):format(s.latency_ms_p50 or 0,
      s.latency_ms_p95 or 0, s.requests))
  else
    h.info('latency: no suggestion made yet')
  end
end

function M.check()
  local h = vim.health
  local codellama = require('codellama')
  h.start('codellama')
  check_neovim(h, codellama)
  local cfg = codellama.config or require('codellama.config').resolve({})
  if not check_server_command(h, cfg) then
    return
  end
  local c = vim.lsp.get_clients({ name = require('codellama.client').NAME })[1]
  if c then
    check_running(h, c)
  else
    h.info('server not running: it starts when you open a file of these filetypes: '
      .. table.concat(cfg.filetypes, ', '))
  end
end

return M
