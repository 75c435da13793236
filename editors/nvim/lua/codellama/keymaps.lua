--- Insert-mode keymaps that act only while a suggestion is shown and otherwise fall through to whatever
--- the key did before: the buffer's own mapping, the user's global mapping, or Neovim's built-in key.

local M = {}

local OURS = 'codellama: '
local saved_callbacks = {} ---@type table<integer, function>
local buffer_maps = {} ---@type table<integer, table<string, table>> bufnr -> lhs -> the buffer's mapping before ours

--- The mapping `lhs` had before ours: buffer-local (captured at attach) or global (looked up now).
local function previous(bufnr, lhs)
  local saved = buffer_maps[bufnr]
  if saved and saved[lhs] then
    return saved[lhs]
  end
  local want = vim.keycode(lhs)
  for _, map in ipairs(vim.api.nvim_get_keymap('i')) do
    if vim.keycode(map.lhs) == want then
      return map
    end
  end
end

--- Called through <Cmd> so that a non-expr callback runs outside the expr mapping's text lock.
function M._call(id)
  local fn = saved_callbacks[id]
  if fn then
    fn()
  end
end

--- The keys our expr mapping returns when there is nothing to act on.
local function fall_through(bufnr, lhs)
  local map = previous(bufnr, lhs)
  if not map then
    return lhs -- our mapping is noremap: this is Neovim's built-in key
  end
  if map.callback then
    if map.expr == 1 then
      return map.callback() or ''
    end
    local id = #saved_callbacks + 1
    saved_callbacks[id] = map.callback
    return ('<Cmd>lua require("codellama.keymaps")._call(%d)<CR>'):format(id)
  end
  local rhs = map.expr == 1 and vim.api.nvim_eval(map.rhs) or map.rhs or ''
  if map.noremap == 1 then
    return rhs
  end
  vim.api.nvim_feedkeys(vim.keycode(rhs), 'im', false) -- a recursive mapping (e.g. to <Plug>) needs remapping
  return ''
end

--- Map each non-false `keymaps[name]` in `bufnr`.  `can(name)` says whether the action applies now; the
--- action itself runs as `require('codellama').run(name)` through <Cmd>, in order with typed keys.
---@param keymaps table<string, string|false>
---@param can fun(bufnr: integer, name: string): boolean
function M.set(bufnr, keymaps, can)
  local saved = buffer_maps[bufnr] or {}
  for name, lhs in pairs(keymaps) do
    if lhs then
      local old = vim.fn.maparg(lhs, 'i', false, true)
      if old.buffer == 1 and not vim.startswith(old.desc or '', OURS) then
        saved[lhs] = old
      end
      vim.keymap.set('i', lhs, function()
        if can(bufnr, name) then
          return ('<Cmd>lua require("codellama").run(%q)<CR>'):format(name)
        end
        return fall_through(bufnr, lhs)
      end, { buffer = bufnr, expr = true, desc = OURS .. name:gsub('_', ' ') })
    end
  end
  buffer_maps[bufnr] = saved
end

--- Remove our mappings from `bufnr` and put back the buffer's own.
function M.clear(bufnr, keymaps)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    buffer_maps[bufnr] = nil
    return
  end
  for _, lhs in pairs(keymaps) do
    if lhs then
      pcall(vim.keymap.del, 'i', lhs, { buffer = bufnr })
      local old = (buffer_maps[bufnr] or {})[lhs]
      if old then
        pcall(vim.fn.mapset, 'i', false, old)
      end
    end
  end
  buffer_maps[bufnr] = nil
end

return M
