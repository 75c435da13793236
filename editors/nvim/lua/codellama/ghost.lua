--- This plugin's own ghost text (Neovim 0.10/0.11, `fallback = 'always'`, or `manual = true`).
---
--- Per buffer: a debounce timer, at most one request in flight (the older one is cancelled), and the
--- suggestion shown as one extmark at the cursor: `virt_text` inline for its first line, `virt_lines`
--- for the rest.  Typing what the suggestion says keeps the rest on screen without a new request, so
--- nothing flickers; anything else clears it.  Errors go to the LSP log, never to a pop-up.

local client = require('codellama.client')

local M = {}

M.ns = vim.api.nvim_create_namespace('codellama.ghost')
local CANCELLED = { [-32800] = true, [-32801] = true } -- RequestCancelled, ContentModified

---@class codellama.Suggestion
---@field items string[] texts to insert at the anchor, already minus what was typed before it
---@field index integer which one is shown
---@field row integer 0-based anchor row
---@field col integer 0-based byte column of the anchor
---@field end_col integer what accepting replaces, up to this column (the item's range end; >= col)
---@field invoked? boolean the items came from an Invoked request (all the server offers here, not only the first)

---@class codellama.GhostState
---@field timer? uv.uv_timer_t
---@field request_id? integer
---@field shown? codellama.Suggestion
---@field dismissed? boolean no automatic request until the text changes

local states = {} ---@type table<integer, codellama.GhostState>
local opts = { debounce_ms = 150, hl_group = 'CodeLlamaSuggestion', manual = false, enabled = true }

local function cursor()
  local pos = vim.api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function line_at(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

-- Rendering --------------------------------------------------------------------------------------

local function hide(bufnr)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
end

local function draw(bufnr, s)
  local tab = string.rep(' ', vim.bo[bufnr].tabstop)
  local chunks = {}
  for line in vim.gsplit(s.items[s.index], '\n', { plain = true }) do
    chunks[#chunks + 1] = { { (line:gsub('\t', tab)), opts.hl_group } }
  end
  local mark = { virt_text = chunks[1], virt_text_pos = 'inline', hl_mode = 'combine' }
  if #chunks > 1 then
    mark.virt_lines = { unpack(chunks, 2) }
  end
  hide(bufnr)
  vim.api.nvim_buf_set_extmark(bufnr, M.ns, s.row, s.col, mark)
end

--- Keep the suggestion if the cursor is still at its anchor, or if the text typed since the anchor is
--- what the suggestion starts with (then the rest moves along); otherwise clear it.  True if kept.
local function sync(bufnr)
  local st = states[bufnr]
  local s = st and st.shown
  if not s then
    return false
  end
  local row, col = cursor()
  local typed = row == s.row and col >= s.col and line_at(bufnr, row):sub(s.col + 1, col)
  local text = s.items[s.index]
  if typed and text:sub(1, #typed) == typed and #typed < #text then
    if #typed > 0 then
      s.items = { text:sub(#typed + 1) }
      s.index, s.col, s.end_col, s.invoked = 1, col, math.max(col, s.end_col), nil
      draw(bufnr, s)
    end
    return true
  end
  st.shown = nil
  hide(bufnr)
  return false
end

--- LSP character offset -> byte column (vim.str_byteindex changed its signature in 0.11).
local function byte_col(line, character, encoding)
  if encoding == 'utf-8' then
    return math.min(character, #line)
  end
  local ok, col
  if vim.fn.has('nvim-0.11') == 1 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == 'utf-16')
  end
  return ok and col or #line
end

-- Requests ---------------------------------------------------------------------------------------

local function cancel(bufnr)
  local st = states[bufnr]
  if st.timer then
    st.timer:stop()
  end
  local c = st.request_id and client.get(bufnr)
  if c then
    client.cancel(c, st.request_id)
  end
  st.request_id = nil
end

--- Item texts minus the part of the line between the item's range start and the cursor (the server may
--- answer with a range that starts before the cursor); items that do not start that way are dropped.
local function texts(bufnr, items, row, col, c)
  local out, end_col = {}, col
  for _, item in ipairs(items) do
    local text = type(item.insertText) == 'table' and item.insertText.value or item.insertText or ''
    local start_col, stop_col = col, col
    if item.range and item.range.start.line == row and item.range['end'].line == row then
      local line = line_at(bufnr, row)
      start_col = byte_col(line, item.range.start.character, c.offset_encoding)
      stop_col = byte_col(line, item.range['end'].character, c.offset_encoding)
    end
    local typed = line_at(bufnr, row):sub(start_col + 1, col)
    if start_col <= col and text:sub(1, #typed) == typed and #text > #typed then
      out[#out + 1] = text:sub(#typed + 1)
      end_col = math.max(end_col, stop_col)
    end
  end
  return out, end_col
end

--- Which item to show: the first, or when cycling (`step`), the one `step` away from the item that was on
--- screen (found among the new items by its text; the server puts it first anyway).
local function pick(items, shown, step)
  if not step then
    return 1
  end
  local at = 1
  for i, text in ipairs(items) do
    if shown and text == shown.items[shown.index] then
      at = i
      break
    end
  end
  return (at - 1 + step) % #items + 1
end

local function on_result(bufnr, tick, row, col, err, result, c, kind, step)
  local st = states[bufnr]
  if not st or not opts.enabled then
    return
  end
  if err then
    if not CANCELLED[err.code] then
      vim.lsp.log.warn('codellama: inline completion failed', err) -- the log, not a pop-up
    end
    return
  end
  local r, k = cursor()
  local stale = vim.b[bufnr].changedtick ~= tick or r ~= row or k ~= col or not vim.fn.mode():match('^i')
  if stale or vim.api.nvim_get_current_buf() ~= bufnr or not result then
    return
  end
  local items, end_col = texts(bufnr, result.items or result, row, col, c)
  if #items == 0 then
    return -- keep whatever typed-ahead text is still shown
  end
  local index = pick(items, st.shown, step)
  st.shown = { items = items, index = index, row = row, col = col, end_col = end_col, invoked = kind == 1 }
  draw(bufnr, st.shown)
end

---@param kind integer 1 = Invoked, 2 = Automatic (InlineCompletionTriggerKind)
---@param step? integer cycling: show the item this far from the one on screen once the answer is in
local function request(bufnr, kind, step)
  local c = client.get(bufnr)
  if not c or vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  cancel(bufnr)
  local row, col = cursor()
  local tick = vim.b[bufnr].changedtick
  local params = vim.lsp.util.make_position_params(0, c.offset_encoding)
  params.context = { triggerKind = kind }
  states[bufnr].request_id = client.request(c, 'textDocument/inlineCompletion', params, function(err, result)
    states[bufnr].request_id = nil
    on_result(bufnr, tick, row, col, err, result, c, kind, step)
  end, bufnr)
end

local function schedule(bufnr)
  local st = states[bufnr]
  if opts.manual or not opts.enabled or st.dismissed then
    return
  end
  st.timer = st.timer or vim.uv.new_timer()
  st.timer:stop()
  st.timer:start(opts.debounce_ms, 0, vim.schedule_wrap(function()
    if states[bufnr] and vim.api.nvim_get_current_buf() == bufnr and vim.fn.mode():match('^i') then
      request(bufnr, 2)
    end
  end))
end

-- Events -----------------------------------------------------------------------------------------

local function clear(bufnr)
  local st = states[bufnr]
  if st then
    cancel(bufnr)
    st.shown = nil
    hide(bufnr)
  end
end

function M.attach(bufnr)
  if states[bufnr] then
    return
  end
  states[bufnr] = {}
  local group = vim.api.nvim_create_augroup('codellama.ghost.' .. bufnr, { clear = true })
  local function on(events, fn)
    vim.api.nvim_create_autocmd(events, { group = group, buffer = bufnr, callback = function()
      fn(bufnr)
    end })
  end
  on('InsertEnter', schedule)
  on({ 'TextChangedI', 'TextChangedP' }, function()
    states[bufnr].dismissed = nil
    if not sync(bufnr) then
      schedule(bufnr)
    end
  end)
  on('CursorMovedI', sync)
  on({ 'InsertLeave', 'BufLeave' }, clear)
end

function M.detach(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  clear(bufnr)
  if st.timer then
    st.timer:close()
  end
  pcall(vim.api.nvim_del_augroup_by_name, 'codellama.ghost.' .. bufnr)
  states[bufnr] = nil
end

-- Actions ----------------------------------------------------------------------------------------

function M.visible(bufnr)
  return states[bufnr] ~= nil and states[bufnr].shown ~= nil
end

--- The part of `text` that accept / accept_word / accept_line inserts.
function M.part(text, what)
  if what == 'word' then
    return text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text:match('^%s+') or text
  elseif what == 'line' then
    return text:match('^\n[^\n]*') or text:match('^[^\n]+') or text
  end
  return text
end

---@param what 'all'|'word'|'line'
function M.accept(bufnr, what)
  local st = states[bufnr]
  local s = st and st.shown
  if not s then
    return false
  end
  local text = s.items[s.index]
  local chunk = M.part(text, what)
  local lines = vim.split(chunk, '\n', { plain = true })
  local end_col = chunk == text and s.end_col or s.col
  vim.api.nvim_buf_set_text(bufnr, s.row, s.col, s.row, end_col, lines)
  local row = s.row + #lines - 1
  local col = (#lines == 1 and s.col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { row + 1, col })
  if chunk == text then
    st.shown = nil
    hide(bufnr)
  else -- the rest stays on screen at the new cursor
    st.shown = { items = { text:sub(#chunk + 1) }, index = 1, row = row, col = col, end_col = col }
    draw(bufnr, st.shown)
  end
  return true
end

function M.dismiss(bufnr)
  if not M.visible(bufnr) then
    return false
  end
  clear(bufnr)
  states[bufnr].dismissed = true
  return true
end

--- Next / previous suggestion.  Typing only brings the first one (the server decodes no others then), so
--- the first cycle asks again with triggerKind Invoked, which brings all it offers, and steps from there.
function M.cycle(bufnr, step)
  local s = M.visible(bufnr) and states[bufnr].shown
  if not s then
    return false
  end
  if not s.invoked then
    request(bufnr, 1, step)
    return true
  end
  if #s.items < 2 then
    return true
  end
  s.index = (s.index - 1 + step) % #s.items + 1
  draw(bufnr, s)
  return true
end

function M.trigger(bufnr)
  if states[bufnr] then
    states[bufnr].dismissed = nil
    request(bufnr, 1)
  end
end

---@param o {debounce_ms: integer, hl_group: string, manual: boolean, enabled: boolean}
function M.configure(o)
  opts = o
  if not o.enabled then
    for bufnr in pairs(states) do
      clear(bufnr)
    end
  end
end

return M
