--- :CodeLlamaStats and :CodeLlamaPrompt: ask the server, show the answer in a scratch buffer.

local client = require('codellama.client')
local notify = require('codellama.notify')

local M = {}

local function any_client()
  return client.get(vim.api.nvim_get_current_buf()) or vim.lsp.get_clients({ name = client.NAME })[1]
end

--- Flatten nested tables into `a.b: value` lines, keys sorted.
local function flatten(value, prefix, out)
  if type(value) == 'table' and not vim.islist(value) and next(value) then
    local keys = vim.tbl_keys(value)
    table.sort(keys)
    for _, k in ipairs(keys) do
      flatten(value[k], prefix and (prefix .. '.' .. k) or k, out)
    end
  else
    local shown = type(value) == 'table' and vim.inspect(value, { newline = ' ', indent = '' })
      or value == vim.NIL and 'null'
      or tostring(value)
    out[#out + 1] = ('%s: %s'):format(prefix, shown)
  end
  return out
end

--- A scratch buffer named `name` in a split (reused if already open), filled with `lines`.
local function show(name, lines, filetype)
  local bufnr = vim.fn.bufnr(name)
  if bufnr == -1 then
    bufnr = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(bufnr, name)
    vim.bo[bufnr].bufhidden = 'wipe'
  end
  vim.bo[bufnr].modifiable = true
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, lines)
  vim.bo[bufnr].modifiable = false
  vim.bo[bufnr].filetype = filetype or ''
  if vim.fn.bufwinid(bufnr) == -1 then
    vim.cmd('botright split')
    vim.api.nvim_win_set_buf(0, bufnr)
  end
end

local function ask(method, render)
  local c = any_client()
  if not c then
    notify.notify('the server is not running (open a file of a configured filetype)', vim.log.levels.WARN, method)
    return
  end
  client.request(c, method, vim.empty_dict(), function(err, result)
    if err then
      notify.notify(('%s failed: %s'):format(method, err.message), vim.log.levels.ERROR, method)
      return
    end
    render(result or {})
  end)
end

function M.stats()
  ask('codellama/stats', function(result)
    show('codellama://stats', flatten(result, nil, {}))
  end)
end

function M.last_prompt()
  ask('codellama/lastPrompt', function(result)
    if not result.text then
      show('codellama://prompt', { '(no prompt yet: type in a buffer with suggestions on)' })
      return
    end
    local lines = {
      ('mode: %s  healed: %s  tokens: %d'):format(result.mode,
        type(result.healed) == 'string' and vim.inspect(result.healed) or 'none', #(result.ids or {})),
      'crossfile: ' .. table.concat(result.crossfile or {}, ', '),
      string.rep('-', 60),
    }
    vim.list_extend(lines, vim.split(result.text, '\n', { plain = true }))
    show('codellama://prompt', lines)
  end)
end

return M
