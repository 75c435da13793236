--- Neovim 0.12's own inline completion (`vim.lsp.inline_completion`): it requests, debounces and renders;
--- this module only turns it on for our buffers and maps our actions onto its API.

local M = {}

local ic ---@module 'vim.lsp.inline_completion'

--- Neovim 0.12+ with the API this module uses.
function M.available()
  if vim.fn.has('nvim-0.12') == 0 then
    return false
  end
  local ok, mod = pcall(require, 'vim.lsp.inline_completion')
  if ok and type(mod.enable) == 'function' and type(mod.get) == 'function' and type(mod.select) == 'function' then
    ic = mod
    return true
  end
  return false
end

function M.attach(bufnr, enabled)
  ic.enable(enabled, { bufnr = bufnr })
end

function M.detach(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    ic.enable(false, { bufnr = bufnr })
  end
end

function M.set_enabled(bufnrs, enabled)
  for _, bufnr in ipairs(bufnrs) do
    ic.enable(enabled, { bufnr = bufnr })
  end
end

--- Whether Neovim shows a suggestion in `bufnr` (its extmark namespace is the one public trace).
function M.visible(bufnr)
  local ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  return ns ~= nil and #vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { limit = 1 }) > 0
end

--- Insert the word / line of `item` that comes after what is already typed, at the cursor.
local function insert_part(item, what)
  local text = type(item.insert_text) == 'string' and item.insert_text or item.insert_text.value
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  row = row - 1
  if item.range and item.range.start.row == row and item.range.start.col <= col then
    local typed = vim.api.nvim_buf_get_lines(0, row, row + 1, false)[1]:sub(item.range.start.col + 1, col)
    if text:sub(1, #typed) ~= typed then
      return
    end
    text = text:sub(#typed + 1)
  end
  local lines = vim.split(require('codellama.ghost').part(text, what), '\n', { plain = true })
  vim.api.nvim_buf_set_text(0, row, col, row, col, lines)
  vim.api.nvim_win_set_cursor(0, { row + #lines, (#lines == 1 and col or 0) + #lines[#lines] })
end

---@param what 'all'|'word'|'line'
function M.accept(bufnr, what)
  if what == 'all' then
    return ic.get({ bufnr = bufnr })
  end
  return ic.get({ bufnr = bufnr, on_accept = function(item)
    insert_part(item, what)
  end })
end

--- Neovim has no "dismiss": accepting with a handler that does nothing hides the suggestion.
function M.dismiss(bufnr)
  return ic.get({ bufnr = bufnr, on_accept = function() end })
end

--- Neovim's completor for `bufnr`: a private table of vim.lsp.inline_completion (nil where it differs).
local function completor(bufnr)
  local ok, capability = pcall(require, 'vim.lsp._capability')
  local all = ok and type(capability) == 'table' and capability.all
  local comp = all and all.inline_completion and all.inline_completion.active
    and all.inline_completion.active[bufnr]
  if comp and type(comp.handler) == 'function' and type(comp.count_items) == 'function' then
    return comp
  end
end

local asked = {} ---@type table<integer, string> bufnr -> where the extra suggestions were last asked for

--- Next / previous suggestion.  Neovim asks only as you type (triggerKind Automatic), which brings the
--- first suggestion alone (the server decodes no others then).  So the first cycle at a spot asks with
--- Invoked, which brings all the server offers, hands the answer to Neovim's completor (as if it had asked)
--- and steps from there.  Where that private table is not as expected, it only steps.
function M.cycle(bufnr, step)
  local comp = completor(bufnr)
  local c = require('codellama.client').get(bufnr)
  local pos = vim.api.nvim_win_get_cursor(0)
  local here = ('%d:%d:%d'):format(vim.b[bufnr].changedtick, pos[1], pos[2])
  if not comp or not c or comp:count_items() > 1 or asked[bufnr] == here then
    ic.select({ bufnr = bufnr, count = step })
    return true
  end
  asked[bufnr] = here
  local params = vim.lsp.util.make_position_params(0, c.offset_encoding)
  params.context = { triggerKind = 1 }
  require('codellama.client').request(c, 'textDocument/inlineCompletion', params, function(err, result, ctx)
    local now = vim.api.nvim_win_get_cursor(0)
    local moved = ('%d:%d:%d'):format(vim.b[bufnr].changedtick, now[1], now[2]) ~= here
    if err or not result or moved or not vim.fn.mode():match('^i') then
      return
    end
    comp:handler(nil, result, ctx)
    ic.select({ bufnr = bufnr, count = step })
  end, bufnr)
  return true
end

return M
