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

function M.cycle(bufnr, step)
  ic.select({ bufnr = bufnr, count = step })
  return true
end

return M
